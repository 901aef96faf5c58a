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
};

export class SecretsError extends featureError(SECRETS_ERROR_KINDS) {}
