import type { ConnectionSecretContext, OaepHash, RootKeyInfo, RsaPublicKey, SealedValue, WrappedKey } from './hsm-ops.js';

/** Messages between the HsmService (main thread) and its worker threads. Plain data only. */
export type HsmTask =
  | { op: 'ping' }
  | { op: 'probe'; probeKey: RsaPublicKey }
  | { op: 'generateRootKey'; version: number }
  | { op: 'destroyRootKey'; version: number }
  | { op: 'listRootKeys' }
  | { op: 'ensureFingerprintKey' }
  | { op: 'ensureCaKey' }
  | { op: 'ensureAuditKey' }
  | { op: 'ensureTicketKey' }
  | { op: 'sessionTicketKeys'; epoch: number }
  | { op: 'auditMac'; items: Uint8Array[] }
  | { op: 'auditVerify'; items: Array<{ message: Uint8Array; mac: Uint8Array }> }
  | {
      op: 'auditAppendBatch';
      records: Array<{ before: Uint8Array; after: Uint8Array }>;
      prevHash: Uint8Array;
      headPrefix: Uint8Array;
      previousHead: { message: Uint8Array; mac: Uint8Array } | null;
    }
  | { op: 'caPublicKey' }
  | { op: 'caSign'; digest: Uint8Array }
  | { op: 'fingerprint'; items: Uint8Array[] }
  | { op: 'generateRandom'; length: number }
  | { op: 'seal'; rootKeyVersion: number; items: Array<{ plaintext: Uint8Array; aad: Uint8Array }> }
  | { op: 'sealConnectionSecret'; rootKeyVersion: number; context: ConnectionSecretContext; plaintext: Uint8Array }
  | { op: 'openConnectionSecret'; context: ConnectionSecretContext; sealed: SealedValue }
  | { op: 'rewrap'; kind: 'dek' | 'cdk'; to: number; items: WrappedKey[] }
  | { op: 'createClusterKey'; rootKeyVersion: number; agentKey: RsaPublicKey; oaep: OaepHash }
  | { op: 'wrapForClusters'; items: Array<{ clusterKey: WrappedKey; deks: WrappedKey[] }> };

export interface HsmTaskResults {
  ping: { slotState: number };
  probe: { mechanisms: number[]; oaep: OaepHash[]; label: string; manufacturer: string; model: string };
  generateRootKey: null;
  destroyRootKey: { destroyed: number };
  listRootKeys: RootKeyInfo[];
  ensureFingerprintKey: null;
  ensureCaKey: null;
  ensureAuditKey: null;
  ensureTicketKey: null;
  sessionTicketKeys: Buffer;
  auditMac: Buffer[];
  auditVerify: boolean[];
  auditAppendBatch: { macs: Buffer[]; headMac: Buffer | null };
  caPublicKey: Buffer;
  caSign: Buffer;
  fingerprint: Buffer[];
  generateRandom: Buffer;
  seal: SealedValue[];
  sealConnectionSecret: SealedValue;
  openConnectionSecret: Buffer;
  rewrap: Buffer[];
  createClusterKey: { forStorage: Buffer; forAgent: Buffer };
  wrapForClusters: Buffer[][];
}

export interface HsmWorkerConfig {
  module: string;
  tokenLabel: string;
  pin: string;
  keyLabelPrefix: string;
}

export type HsmRequest = { id: number; task: HsmTask };
export type HsmResponse = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: { message: string; ckr?: string } };
