import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { RETRY_AFTER_METADATA } from '@sigil/agent-protocol';
import { RetryLaterError, SigilError, type ErrorKind } from '../common/sigil-error.js';
import { isTransientDependencyError } from '../common/transient-errors.js';

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

/** How long an agent should spread its retries over when the control plane's database is overloaded. */
const BUSY_RETRY_MS = 2_000;

/**
 * SigilErrors keep their message and code (a RetryLaterError its window, as retry-after
 * metadata: the agent work queue's `busy`); a busy or briefly unreachable database is
 * UNAVAILABLE with a retry window (agents retry it); anything else is an internal error with no
 * details. Both of the latter are logged by the caller (`internal`).
 */
export function toGrpcError(err: unknown): { error: Partial<ServiceError>; internal: boolean } {
  if (err instanceof RetryLaterError)
    return { error: grpcError(STATUS[err.kind], err.code, err.message, err.retryAfterSeconds * 1000), internal: false };
  if (err instanceof SigilError) return { error: grpcError(STATUS[err.kind], err.code, err.message), internal: false };
  if (err instanceof GrpcStatusError) return { error: err, internal: false };
  if (isTransientDependencyError(err))
    return { error: grpcError(status.UNAVAILABLE, 'busy', 'the control plane is busy; retry shortly', BUSY_RETRY_MS), internal: true };
  return { error: grpcError(status.INTERNAL, 'internal', 'internal error'), internal: true };
}
