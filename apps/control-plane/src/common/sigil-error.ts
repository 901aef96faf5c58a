/**
 * Base of every feature's errors. Services throw their feature's subclass (never HTTP
 * exceptions), constructed from a member of the feature's code enum; the feature's table gives
 * each code its `kind`, and the REST filter and the gRPC mapper map the kind to a status. Both
 * tables are total (`Record`), so a code without a kind, or a kind without a status, does not
 * compile. Messages must never contain secret values.
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
  | 'unavailable'
  /** A system Sigil talks to for the caller (a registered database) failed: 502, not Sigil's fault nor the request's form. */
  | 'upstream_failed';

/** A feature's codes, each with the kind of refusal it is (one kind per code within a feature). */
export type ErrorKinds<C extends string> = Readonly<Record<C, ErrorKind>>;

/** Field-level details for validation errors: `{ field: 'data.KEY', problem: '…' }`. */
export interface ProblemField {
  field: string;
  problem: string;
}

export interface SigilErrorOptions {
  details?: ProblemField[];
  /** The caller should retry after this long; REST sends it as `Retry-After`, gRPC as retry-after metadata. */
  retryAfterSeconds?: number;
  /** A finer machine-readable cause under the code (e.g. connection_failed: unreachable, auth_failed). */
  reason?: string;
}

export class SigilError extends Error {
  readonly details?: ProblemField[];
  readonly retryAfterSeconds?: number;
  readonly reason?: string;

  protected constructor(
    readonly kind: ErrorKind,
    readonly code: string,
    message: string,
    options: SigilErrorOptions = {},
  ) {
    super(message);
    this.name = new.target.name;
    if (options.details) this.details = options.details;
    if (options.retryAfterSeconds !== undefined) this.retryAfterSeconds = options.retryAfterSeconds;
    if (options.reason !== undefined) this.reason = options.reason;
  }
}

/**
 * The base of a feature's error class: `class SecretsError extends featureError(KINDS) {}`. Its
 * constructor takes only the feature's codes; the kind comes from the feature's table.
 */
export function featureError<C extends string>(kinds: ErrorKinds<C>) {
  return class extends SigilError {
    declare readonly code: C;

    constructor(code: C, message: string, options?: SigilErrorOptions) {
      super(kinds[code], code, message, options);
    }
  };
}
