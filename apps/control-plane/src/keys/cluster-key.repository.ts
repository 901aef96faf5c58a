import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { inTransaction, managerOf, type Tx } from '../database/transaction.js';

export interface ClusterKeyRow {
  id: string;
  clusterId: string;
  version: number;
  state: 'active' | 'retired';
  rootKeyVersion: number;
  /** AES-KWP(root key, delivery key) */
  wrappedKey: Buffer;
  agentPublicKey: Buffer;
  /** SGK1 envelope for the agent */
  agentEnvelope: Buffer;
}

const COLUMNS = `id, cluster_id AS "clusterId", version, state, root_key_version AS "rootKeyVersion",
  wrapped_key AS "wrappedKey", agent_public_key AS "agentPublicKey", agent_envelope AS "agentEnvelope"`;

/** Per-cluster delivery keys, stored only wrapped under a root key. */
@Injectable()
export class ClusterKeyRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  private em(tx: Tx | undefined) {
    return managerOf(this.ds, tx);
  }

  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return inTransaction(this.ds, fn);
  }

  async active(clusterId: string, tx?: Tx): Promise<ClusterKeyRow | undefined> {
    const rows = await this.em(tx).query<ClusterKeyRow[]>(
      `SELECT ${COLUMNS} FROM cluster_keys WHERE cluster_id = $1 AND state = 'active'`,
      [clusterId],
    );
    return rows[0];
  }

  async activeFor(clusterIds: string[], tx?: Tx): Promise<Map<string, ClusterKeyRow>> {
    const rows = await this.em(tx).query<ClusterKeyRow[]>(
      `SELECT ${COLUMNS} FROM cluster_keys WHERE cluster_id = ANY($1::uuid[]) AND state = 'active'`,
      [clusterIds],
    );
    return new Map(rows.map((r) => [r.clusterId, r]));
  }

  /** Locks the cluster's key rows (serialises concurrent issue/rotate) and returns the next version. */
  async lockNextVersion(tx: Tx, clusterId: string): Promise<number> {
    await this.em(tx).query('SELECT pg_advisory_xact_lock(hashtext($1))', [`cluster-key:${clusterId}`]);
    const rows = await this.em(tx).query<Array<{ v: number | null }>>('SELECT max(version) AS v FROM cluster_keys WHERE cluster_id = $1', [
      clusterId,
    ]);
    return (rows[0]?.v ?? 0) + 1;
  }

  async retireActive(tx: Tx, clusterId: string): Promise<void> {
    await this.em(tx).query(`UPDATE cluster_keys SET state = 'retired' WHERE cluster_id = $1 AND state = 'active'`, [clusterId]);
  }

  async insert(tx: Tx, row: Omit<ClusterKeyRow, 'id' | 'state'>): Promise<void> {
    await this.em(tx).query(
      `INSERT INTO cluster_keys (cluster_id, version, state, root_key_version, wrapped_key, agent_public_key, agent_envelope)
       VALUES ($1, $2, 'active', $3, $4, $5, $6)`,
      [row.clusterId, row.version, row.rootKeyVersion, row.wrappedKey, row.agentPublicKey, row.agentEnvelope],
    );
  }
}
