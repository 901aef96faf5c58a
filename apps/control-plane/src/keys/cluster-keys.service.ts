import { Inject, Injectable } from '@nestjs/common';
import { EnvelopeFormatError, encodeClusterKeyEnvelope, rsaPublicKeyComponents } from '@sigil/envelope';
import type { Tx } from '../database/transaction.js';
import { HsmService } from '../hsm/hsm.service.js';
import { ClusterKeyRepository } from './cluster-key.repository.js';
import { KeyCustodyError, KeyCustodyErrorCode } from './keys.errors.js';
import { RootKeyRepository } from './root-key.repository.js';

/** 3072 bits ≈ 128-bit security, matching the AES-256 keys it carries (the agent makes 3072). */
export const MIN_AGENT_KEY_BITS = 3072;
/** The HSM's wrap output buffer holds 1024 bytes; larger keys would fail there, not here. */
export const MAX_AGENT_KEY_BITS = 8192;

/**
 * Each cluster has an AES-256 delivery key, generated in the HSM, stored wrapped under the
 * root key, and sent once to its agent wrapped with RSA-OAEP to the agent's public key. Data
 * keys reach a cluster only wrapped under its delivery key (see EnvelopeService).
 */
@Injectable()
export class ClusterKeyService {
  constructor(
    @Inject(HsmService) private readonly hsm: HsmService,
    @Inject(RootKeyRepository) private readonly rootKeys: RootKeyRepository,
    @Inject(ClusterKeyRepository) private readonly repo: ClusterKeyRepository,
  ) {}

  /** The checks `issue` makes on an agent's RSA public key, for callers that validate before any work. */
  static checkAgentKey(agentPublicKeyDer: Buffer): ReturnType<typeof rsaPublicKeyComponents> {
    let components;
    try {
      components = rsaPublicKeyComponents(agentPublicKeyDer);
    } catch (err) {
      if (err instanceof EnvelopeFormatError) throw new KeyCustodyError(KeyCustodyErrorCode.InvalidAgentKey, err.message);
      throw err;
    }
    if (components.bits < MIN_AGENT_KEY_BITS || components.bits > MAX_AGENT_KEY_BITS) {
      throw new KeyCustodyError(
        KeyCustodyErrorCode.InvalidAgentKey,
        `agent RSA key must have ${MIN_AGENT_KEY_BITS} to ${MAX_AGENT_KEY_BITS} bits`,
      );
    }
    return components;
  }

  /**
   * Issues a new delivery key for `clusterId` (first enrollment, or re-enrollment with a new agent key),
   * in transaction `tx` when given (enrollment commits it with the rest).
   */
  async issue(clusterId: string, agentPublicKeyDer: Buffer, tx?: Tx): Promise<{ version: number; envelope: Buffer }> {
    const work = async (tx: Tx) => (await this.issueMany(tx, [{ clusterId, agentPublicKeyDer }])).get(clusterId)!;
    return tx ? work(tx) : this.repo.transaction(work);
  }

  /**
   * New delivery keys for several clusters (one per cluster) in transaction `tx`: the SQL is
   * the same few statements for any number of them (enrollment commits them in batches); the
   * HSM still generates and wraps each key on its own. Returns them by cluster id.
   */
  async issueMany(
    tx: Tx,
    requests: Array<{ clusterId: string; agentPublicKeyDer: Buffer }>,
  ): Promise<Map<string, { version: number; envelope: Buffer }>> {
    if (requests.length === 0) return new Map();
    if (new Set(requests.map((r) => r.clusterId)).size !== requests.length) throw new Error('one new delivery key per cluster per call');
    const checked = requests.map((r) => ({ ...r, components: ClusterKeyService.checkAgentKey(r.agentPublicKeyDer) }));
    const versions = await this.repo.lockNextVersions(
      tx,
      checked.map((r) => r.clusterId),
    );
    const rootKeyVersion = await this.rootKeys.activeForSealing(tx);
    if (rootKeyVersion === undefined) throw new KeyCustodyError(KeyCustodyErrorCode.NoActiveRootKey, 'no active root key');
    const rows = await Promise.all(
      checked.map(async (r) => {
        const version = versions.get(r.clusterId)!;
        const key = await this.hsm.createClusterKey(rootKeyVersion, r.components);
        return {
          clusterId: r.clusterId,
          version,
          rootKeyVersion,
          wrappedKey: key.forStorage,
          agentPublicKey: r.agentPublicKeyDer,
          agentEnvelope: encodeClusterKeyEnvelope({ clusterKeyVersion: version, oaepHash: key.oaep, wrappedKey: key.forAgent }),
        };
      }),
    );
    await this.repo.replaceActive(tx, rows);
    return new Map(rows.map((r) => [r.clusterId, { version: r.version, envelope: r.agentEnvelope }]));
  }

  /** The SGK1 envelope of the active key, for (re)delivery to the agent. */
  async activeEnvelope(clusterId: string): Promise<{ version: number; envelope: Buffer } | undefined> {
    const active = await this.repo.active(clusterId);
    return active && { version: active.version, envelope: active.agentEnvelope };
  }
}
