import { featureError, type ErrorKinds } from '../common/sigil-error.js';

/** Codes of apps. */
export enum AppsErrorCode {
  AppNotFound = 'app_not_found',
  AppExists = 'app_exists',
  AppPublished = 'app_published',
  SecretTargetConflict = 'secret_target_conflict',
  NamespaceNotGranted = 'namespace_not_granted',
  /** deliveryMode inject without a consumer. */
  ConsumersRequired = 'consumers_required',
}

export const APPS_ERROR_KINDS: ErrorKinds<AppsErrorCode> = {
  [AppsErrorCode.AppNotFound]: 'not_found',
  [AppsErrorCode.AppExists]: 'conflict',
  [AppsErrorCode.AppPublished]: 'conflict',
  [AppsErrorCode.SecretTargetConflict]: 'conflict',
  [AppsErrorCode.NamespaceNotGranted]: 'forbidden',
  [AppsErrorCode.ConsumersRequired]: 'invalid',
};

export class AppsError extends featureError(APPS_ERROR_KINDS) {}
