export enum KeyCustodyErrorCode {
  NoActiveRootKey = 'no_active_root_key',
  RotationInProgress = 'rotation_in_progress',
  RootKeyNotRetired = 'root_key_not_retired',
  RootKeyInUse = 'root_key_in_use',
  RootKeyNotFound = 'root_key_not_found',
  ClusterKeyMissing = 'cluster_key_missing',
  SealedValueMissing = 'sealed_value_missing',
  InvalidAgentKey = 'invalid_agent_key',
}

/** Errors of key custody; mapped to HTTP / gRPC status at the edges, never carrying key material. */
export class KeyCustodyError extends Error {
  constructor(
    readonly code: KeyCustodyErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'KeyCustodyError';
  }
}
