import { featureError, type ErrorKinds } from '../common/sigil-error.js';

/** Codes of agent enrollment and certificate renewal (sent to agents over gRPC). */
export enum EnrollmentErrorCode {
  InvalidCluster = 'invalid_cluster',
  CredentialRequired = 'credential_required',
  InvalidCsr = 'invalid_csr',
  InvalidAgentVersion = 'invalid_agent_version',
  InvalidDeliveryKey = 'invalid_delivery_key',
  EnrollmentTokenInvalid = 'enrollment_token_invalid',
  ServiceAccountTokenInvalid = 'service_account_token_invalid',
  KubernetesIdentityChanged = 'kubernetes_identity_changed',
  ClusterDisabled = 'cluster_disabled',
}

export const ENROLLMENT_ERROR_KINDS: ErrorKinds<EnrollmentErrorCode> = {
  [EnrollmentErrorCode.InvalidCluster]: 'invalid',
  [EnrollmentErrorCode.CredentialRequired]: 'invalid',
  [EnrollmentErrorCode.InvalidCsr]: 'invalid',
  [EnrollmentErrorCode.InvalidAgentVersion]: 'invalid',
  [EnrollmentErrorCode.InvalidDeliveryKey]: 'invalid',
  [EnrollmentErrorCode.EnrollmentTokenInvalid]: 'unauthenticated',
  [EnrollmentErrorCode.ServiceAccountTokenInvalid]: 'unauthenticated',
  [EnrollmentErrorCode.KubernetesIdentityChanged]: 'unauthenticated',
  [EnrollmentErrorCode.ClusterDisabled]: 'forbidden',
};

export class EnrollmentError extends featureError(ENROLLMENT_ERROR_KINDS) {}
