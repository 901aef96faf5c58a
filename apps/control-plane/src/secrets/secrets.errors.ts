import { featureError, type ErrorKinds } from '../common/sigil-error.js';

/** Codes of secrets and their versions. */
export enum SecretsErrorCode {
  SecretNotFound = 'secret_not_found',
  SecretVersionNotFound = 'secret_version_not_found',
  SecretExists = 'secret_exists',
  SecretTargetConflict = 'secret_target_conflict',
  AppChanged = 'app_changed',
  InvalidSecret = 'invalid_secret',
  InvalidSecretType = 'invalid_secret_type',
  SecretTooLarge = 'secret_too_large',
  InvalidContainer = 'invalid_container',
  /** A typed write (PUT with data) to a generated secret: its values come from the HSM only. */
  SecretIsGenerated = 'secret_is_generated',
  /** Rotate-now or a schedule asked of a typed secret. */
  SecretNotGenerated = 'secret_not_generated',
  /** A typed write, rollback, rotation or schedule asked of a dynamic secret: its values are per-cluster leases. */
  SecretIsDynamic = 'secret_is_dynamic',
  /** A dynamic secret's times are out of bounds or inconsistent, or its type cannot hold a credential. */
  InvalidDynamicSecret = 'invalid_dynamic_secret',
  /** A dynamic secret names a database connection the project does not have. */
  UnknownConnection = 'unknown_connection',
}

export const SECRETS_ERROR_KINDS: ErrorKinds<SecretsErrorCode> = {
  [SecretsErrorCode.SecretNotFound]: 'not_found',
  [SecretsErrorCode.SecretVersionNotFound]: 'not_found',
  [SecretsErrorCode.SecretExists]: 'conflict',
  [SecretsErrorCode.SecretTargetConflict]: 'conflict',
  [SecretsErrorCode.AppChanged]: 'conflict',
  [SecretsErrorCode.InvalidSecret]: 'invalid',
  [SecretsErrorCode.InvalidSecretType]: 'invalid',
  [SecretsErrorCode.SecretTooLarge]: 'too_large',
  [SecretsErrorCode.InvalidContainer]: 'invalid',
  [SecretsErrorCode.SecretIsGenerated]: 'conflict',
  [SecretsErrorCode.SecretNotGenerated]: 'conflict',
  [SecretsErrorCode.SecretIsDynamic]: 'conflict',
  [SecretsErrorCode.InvalidDynamicSecret]: 'invalid',
  [SecretsErrorCode.UnknownConnection]: 'invalid',
};

export class SecretsError extends featureError(SECRETS_ERROR_KINDS) {}
