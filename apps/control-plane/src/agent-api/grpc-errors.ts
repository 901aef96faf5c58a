import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { AgentApiErrorCode, ERROR_CODE_METADATA, RETRY_AFTER_METADATA } from '@sigil/agent-protocol';
import { asDependencyError } from '../common/dependency.errors.js';
import { SigilError, type ErrorKind } from '../common/sigil-error.js';

/**
 * The gRPC status of each kind of SigilError (every feature's code has a kind, so with this table
 * total every code maps, or the build fails).
 */
export const GRPC_STATUS: Readonly<Record<ErrorKind, status>> = {
  invalid: status.INVALID_ARGUMENT,
  unauthenticated: status.UNAUTHENTICATED,
  forbidden: status.PERMISSION_DENIED,
  not_found: status.NOT_FOUND,
  conflict: status.FAILED_PRECONDITION,
  precondition_failed: status.FAILED_PRECONDITION,
  too_large: status.RESOURCE_EXHAUSTED,
  rate_limited: status.RESOURCE_EXHAUSTED,
  unavailable: status.UNAVAILABLE,
  upstream_failed: status.UNAVAILABLE,
};

/** The gRPC status of each code the agent API sends itself (libs/agent-protocol). */
export const AGENT_API_STATUS: Readonly<Record<AgentApiErrorCode, status>> = {
  [AgentApiErrorCode.RateLimited]: status.RESOURCE_EXHAUSTED,
  [AgentApiErrorCode.AdmissionRamp]: status.UNAVAILABLE,
  [AgentApiErrorCode.Busy]: status.UNAVAILABLE,
  [AgentApiErrorCode.HsmUnavailable]: status.UNAVAILABLE,
  [AgentApiErrorCode.ShuttingDown]: status.UNAVAILABLE,
  [AgentApiErrorCode.Stalled]: status.UNAVAILABLE,
  [AgentApiErrorCode.Superseded]: status.RESOURCE_EXHAUSTED,
  [AgentApiErrorCode.AccessRevoked]: status.PERMISSION_DENIED,
  [AgentApiErrorCode.ClientCertificateRequired]: status.UNAUTHENTICATED,
  [AgentApiErrorCode.InvalidClientCertificate]: status.UNAUTHENTICATED,
  [AgentApiErrorCode.ClientCertificateExpired]: status.UNAUTHENTICATED,
  [AgentApiErrorCode.CertificateSuperseded]: status.UNAUTHENTICATED,
  // The certificate names a cluster that no longer exists: the credential, not a lookup, failed.
  [AgentApiErrorCode.ClusterNotFound]: status.UNAUTHENTICATED,
  [AgentApiErrorCode.ClusterDisabled]: status.PERMISSION_DENIED,
  [AgentApiErrorCode.HelloExpected]: status.INVALID_ARGUMENT,
  [AgentApiErrorCode.UnexpectedHello]: status.INVALID_ARGUMENT,
  [AgentApiErrorCode.UnknownMessage]: status.INVALID_ARGUMENT,
  [AgentApiErrorCode.InvalidAgentVersion]: status.INVALID_ARGUMENT,
  [AgentApiErrorCode.UnexpectedGeneration]: status.INVALID_ARGUMENT,
  [AgentApiErrorCode.TooManyStatuses]: status.INVALID_ARGUMENT,
  [AgentApiErrorCode.TooManyGrants]: status.INVALID_ARGUMENT,
  [AgentApiErrorCode.InvalidStatus]: status.INVALID_ARGUMENT,
  [AgentApiErrorCode.Internal]: status.INTERNAL,
};

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

/** A refusal of the agent API's own, with its status from AGENT_API_STATUS and, when the caller should wait, the window. */
export const grpcError = (code: AgentApiErrorCode, details: string, retryAfterMs?: number) =>
  new GrpcStatusError(AGENT_API_STATUS[code], code, details, retryAfterMs);

const fromSigilError = (e: SigilError) =>
  new GrpcStatusError(GRPC_STATUS[e.kind], e.code, e.message, e.retryAfterSeconds === undefined ? undefined : e.retryAfterSeconds * 1000);

/**
 * SigilErrors (every feature's, key custody's) keep their code and message, with their retry
 * window as retry-after metadata (the agent work queue's `busy`); a busy or briefly unreachable
 * database, or an HSM outage, is UNAVAILABLE `busy` / `hsm_unavailable` with a retry window
 * (agents retry it); anything else is an internal error with no details. Both of the latter are
 * logged by the caller (`internal`).
 */
export function toGrpcError(err: unknown): { error: Partial<ServiceError>; internal: boolean } {
  if (err instanceof SigilError) return { error: fromSigilError(err), internal: false };
  if (err instanceof GrpcStatusError) return { error: err, internal: false };
  const dependency = asDependencyError(err);
  if (dependency) return { error: fromSigilError(dependency), internal: true };
  return { error: grpcError(AgentApiErrorCode.Internal, 'internal error'), internal: true };
}
