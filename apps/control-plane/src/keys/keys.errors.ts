import { SigilError, type ErrorKind } from '../common/sigil-error.js';

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
}

/** How each code reaches a client (REST status, gRPC code); exhaustive, so a new code needs a line here. */
const KIND: Record<KeyCustodyErrorCode, ErrorKind> = {
  [KeyCustodyErrorCode.NoActiveRootKey]: 'unavailable',
  [KeyCustodyErrorCode.RotationInProgress]: 'conflict',
  [KeyCustodyErrorCode.RotationNotFound]: 'not_found',
  [KeyCustodyErrorCode.RootKeyNotRetired]: 'conflict',
  [KeyCustodyErrorCode.RootKeyInUse]: 'conflict',
  [KeyCustodyErrorCode.RootKeyNotFound]: 'not_found',
  [KeyCustodyErrorCode.ClusterKeyMissing]: 'conflict',
  [KeyCustodyErrorCode.SealedValueMissing]: 'not_found',
  [KeyCustodyErrorCode.InvalidAgentKey]: 'invalid',
};

/** Errors of key custody; mapped to HTTP / gRPC status at the edges, never carrying key material. */
export class KeyCustodyError extends SigilError {
  declare readonly code: KeyCustodyErrorCode;

  constructor(code: KeyCustodyErrorCode, message: string) {
    super(KIND[code], code, message);
    this.name = 'KeyCustodyError';
  }
}
