/**
 * Base of every feature's errors. Services throw these (never HTTP exceptions); the REST
 * filter maps `kind` to a status and `code` is the stable machine-readable identifier.
 * Messages must never contain secret values.
 */
export type ErrorKind =
  | 'invalid'
  | 'unauthenticated'
  | 'forbidden'
  | 'not_found'
  | 'conflict'
  | 'precondition_failed'
  | 'too_large'
  | 'rate_limited'
  | 'unavailable';

export const HTTP_STATUS: Record<ErrorKind, number> = {
  invalid: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  precondition_failed: 412,
  too_large: 413,
  rate_limited: 429,
  unavailable: 503,
};

export class SigilError extends Error {
  constructor(
    readonly kind: ErrorKind,
    readonly code: string,
    message: string,
    /** Field-level details for validation errors: `{ field: 'data.KEY', problem: '…' }`. */
    readonly details?: Array<{ field: string; problem: string }>,
  ) {
    super(message);
    this.name = 'SigilError';
  }
}

export const notFound = (what: string, code = 'not_found') => new SigilError('not_found', code, `${what} not found`);
export const invalid = (code: string, message: string, details?: Array<{ field: string; problem: string }>) =>
  new SigilError('invalid', code, message, details);
export const conflict = (code: string, message: string) => new SigilError('conflict', code, message);

/** A refusal to retry after `retryAfterSeconds`; REST sends it as `Retry-After`. */
export class RetryLaterError extends SigilError {
  constructor(
    kind: 'rate_limited' | 'unavailable',
    code: string,
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(kind, code, message);
  }
}
