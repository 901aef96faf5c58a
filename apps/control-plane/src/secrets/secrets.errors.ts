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
};

export class SecretsError extends featureError(SECRETS_ERROR_KINDS) {}
