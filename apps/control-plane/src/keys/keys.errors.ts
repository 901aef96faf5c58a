import { featureError, type ErrorKinds } from '../common/sigil-error.js';

export enum KeyCustodyErrorCode {
  NoActiveRootKey = 'no_active_root_key',
  RotationInProgress = 'rotation_in_progress',
  RotationNotFound = 'rotation_not_found',
  RootKeyNotRetired = 'root_key_not_retired',
  RootKeyInUse = 'root_key_in_use',
  RootKeyNotFound = 'root_key_not_found',
  ClusterKeyMissing = 'cluster_key_missing',
  SealedValueMissing = 'sealed_value_missing',
  InvalidAgentKey = 'invalid_agent_key',
  InvalidRootKeyVersion = 'invalid_root_key_version',
}

/**
 * A missing active root key, cluster key or sealed value is a state the installation is in (not
 * yet initialised, or changed concurrently), not a fault of the request: callers retry (503).
 */
export const KEY_CUSTODY_ERROR_KINDS: ErrorKinds<KeyCustodyErrorCode> = {
  [KeyCustodyErrorCode.NoActiveRootKey]: 'unavailable',
  [KeyCustodyErrorCode.RotationInProgress]: 'conflict',
  [KeyCustodyErrorCode.RotationNotFound]: 'not_found',
  [KeyCustodyErrorCode.RootKeyNotRetired]: 'conflict',
  [KeyCustodyErrorCode.RootKeyInUse]: 'conflict',
  [KeyCustodyErrorCode.RootKeyNotFound]: 'not_found',
  [KeyCustodyErrorCode.ClusterKeyMissing]: 'unavailable',
  [KeyCustodyErrorCode.SealedValueMissing]: 'unavailable',
  [KeyCustodyErrorCode.InvalidAgentKey]: 'invalid',
  [KeyCustodyErrorCode.InvalidRootKeyVersion]: 'invalid',
};

/** Errors of key custody; mapped to HTTP / gRPC status at the edges, never carrying key material. */
export class KeyCustodyError extends featureError(KEY_CUSTODY_ERROR_KINDS) {}
