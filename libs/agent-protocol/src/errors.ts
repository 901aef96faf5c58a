import type { Metadata } from '@grpc/grpc-js';

/**
 * The protocol's error vocabulary, shared by the control plane (which sends it), the agent, the
 * test agent and the bench's simulated agents (which act on it). docs/agent-protocol.md lists
 * what each code means and what an agent does about it.
 */

/** Trailing-metadata key of Sigil's machine-readable code on a refused call or an ended stream. */
export const ERROR_CODE_METADATA = 'sigil-error-code';

/** The `sigil-error-code` of a failed call (a ServiceError), if the control plane sent one. */
export function errorCodeOf(err: { metadata?: Metadata } | null | undefined): string | undefined {
  const code = err?.metadata?.get(ERROR_CODE_METADATA)[0];
  return typeof code === 'string' ? code : undefined;
}

/**
 * The codes the agent API itself sends in `sigil-error-code` (enrollment's own refusals, such as
 * `enrollment_token_invalid`, come from the control plane's enrollment feature).
 */
export const AgentApiErrorCode = {
  /** Too many failed enrollments from one address. */
  RateLimited: 'rate_limited',
  /** A (re)started replica admits sessions gradually; retry after the window. */
  AdmissionRamp: 'admission_ramp',
  /** The database is busy or briefly unreachable; retry after the window. */
  Busy: 'busy',
  /** The HSM is unavailable; retry after the window. */
  HsmUnavailable: 'hsm_unavailable',
  /** This replica is shutting down; reconnect (to another) within the window. */
  ShuttingDown: 'shutting_down',
  /** The agent stopped reading its stream; reconnect. */
  Stalled: 'stalled',
  /** A newer Sync stream of the same cluster replaced this one. */
  Superseded: 'superseded',
  /** The cluster was disabled or deleted, or enrolled again, while the stream was open. */
  AccessRevoked: 'access_revoked',
  ClientCertificateRequired: 'client_certificate_required',
  InvalidClientCertificate: 'invalid_client_certificate',
  ClientCertificateExpired: 'client_certificate_expired',
  /** A newer enrollment replaced this certificate: the agent drops it and enrolls again. */
  CertificateSuperseded: 'certificate_superseded',
  ClusterNotFound: 'cluster_not_found',
  ClusterDisabled: 'cluster_disabled',
  HelloExpected: 'hello_expected',
  UnexpectedHello: 'unexpected_hello',
  UnknownMessage: 'unknown_message',
  InvalidAgentVersion: 'invalid_agent_version',
  UnexpectedGeneration: 'unexpected_generation',
  TooManyStatuses: 'too_many_statuses',
  InvalidStatus: 'invalid_status',
  /** More grants in one Grants message than the control plane accepts (agent-api MAX_GRANTS_PER_MESSAGE). */
  TooManyGrants: 'too_many_grants',
  /** Anything unexpected; the details say nothing more. */
  Internal: 'internal',
} as const;
export type AgentApiErrorCode = (typeof AgentApiErrorCode)[keyof typeof AgentApiErrorCode];

/**
 * The constant reasons an agent reports for a Secret it could not apply (SecretStatus.reason,
 * `sigil_agent_secret_failures_total{reason}`); never a value.
 */
export const SecretFailureReason = {
  /** Another owner holds the Secret: unmanaged, another Sigil source, or two entries for one target. */
  Conflict: 'Conflict',
  /** Outside the namespaces this agent serves (`--namespaces`). */
  NamespaceNotServed: 'NamespaceNotServed',
  NamespaceNotFound: 'NamespaceNotFound',
  /** Kubernetes RBAC refused the write. */
  Forbidden: 'Forbidden',
  /** The envelope could not be opened (or the sink threw). */
  DecryptFailed: 'DecryptFailed',
  /** Any other Kubernetes API error. */
  KubernetesError: 'KubernetesError',
  /** The Secret kept changing between read and conditional write. */
  WriteConflict: 'WriteConflict',
  /** An inject-mode secret reached an agent that runs without --inject: no pod can receive it. */
  InjectionNotServed: 'InjectionNotServed',
} as const;
export type SecretFailureReason = (typeof SecretFailureReason)[keyof typeof SecretFailureReason];
