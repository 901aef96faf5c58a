import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { RETRY_AFTER_METADATA } from '@sigil/agent-protocol';
import { SigilError, type ErrorKind } from '../common/sigil-error.js';

const STATUS: Record<ErrorKind, status> = {
  invalid: status.INVALID_ARGUMENT,
  unauthenticated: status.UNAUTHENTICATED,
  forbidden: status.PERMISSION_DENIED,
  not_found: status.NOT_FOUND,
  conflict: status.FAILED_PRECONDITION,
  precondition_failed: status.FAILED_PRECONDITION,
  too_large: status.RESOURCE_EXHAUSTED,
  rate_limited: status.RESOURCE_EXHAUSTED,
  unavailable: status.UNAVAILABLE,
};

/** The machine-readable reason, in trailing metadata next to the human-readable details. */
export const ERROR_CODE_METADATA = 'sigil-error-code';

/** A gRPC status as an Error (grpc-js sends its code, details and metadata as the call's status). */
export class GrpcStatusError extends Error implements Partial<ServiceError> {
  readonly metadata = new Metadata();

  constructor(
    readonly code: status,
    readonly errorCode: string,
    readonly details: string,
    retryAfterMs?: number,
  ) {
    super(details);
    this.name = 'GrpcStatusError';
    this.metadata.set(ERROR_CODE_METADATA, errorCode);
    if (retryAfterMs !== undefined) this.metadata.set(RETRY_AFTER_METADATA, String(Math.ceil(retryAfterMs)));
  }
}

/** A gRPC error with Sigil's stable code and, when the caller should wait, the window to retry in. */
export const grpcError = (code: status, errorCode: string, details: string, retryAfterMs?: number) =>
  new GrpcStatusError(code, errorCode, details, retryAfterMs);

/** SigilErrors keep their message and code; anything else is an internal error with no details. */
export function toGrpcError(err: unknown): { error: Partial<ServiceError>; internal: boolean } {
  if (err instanceof SigilError) return { error: grpcError(STATUS[err.kind], err.code, err.message), internal: false };
  if (err instanceof GrpcStatusError) return { error: err, internal: false };
  return { error: grpcError(status.INTERNAL, 'internal', 'internal error'), internal: true };
}
