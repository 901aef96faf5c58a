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

  /**
   * Locks each cluster's key rows (serialises concurrent issues for a cluster; in id order, so
   * two batches cannot deadlock) and returns each one's next version, by cluster id.
   */
  async lockNextVersions(tx: Tx, clusterIds: string[]): Promise<Map<string, number>> {
    const ids = [...new Set(clusterIds)].sort();
    if (ids.length === 0) return new Map();
    await this.em(tx).query(`SELECT pg_advisory_xact_lock(hashtext('cluster-key:' || id::text)) FROM unnest($1::uuid[]) AS id`, [ids]);
    const rows = await this.em(tx).query<Array<{ id: string; v: number }>>(
      'SELECT cluster_id AS id, max(version) AS v FROM cluster_keys WHERE cluster_id = ANY($1::uuid[]) GROUP BY cluster_id',
      [ids],
    );
    const latest = new Map(rows.map((r) => [r.id, r.v]));
    return new Map(ids.map((id) => [id, (latest.get(id) ?? 0) + 1]));
  }

  /** Retires the clusters' active keys and inserts the given ones as active, in two statements. */
  async replaceActive(tx: Tx, rows: Array<Omit<ClusterKeyRow, 'id' | 'state'>>): Promise<void> {
    if (rows.length === 0) return;
    await this.em(tx).query(`UPDATE cluster_keys SET state = 'retired' WHERE cluster_id = ANY($1::uuid[]) AND state = 'active'`, [
      rows.map((r) => r.clusterId),
    ]);
    await this.em(tx).query(
      `INSERT INTO cluster_keys (cluster_id, version, state, root_key_version, wrapped_key, agent_public_key, agent_envelope)
       SELECT c, v, 'active', r, w, p, e FROM unnest($1::uuid[], $2::int[], $3::int[], $4::bytea[], $5::bytea[], $6::bytea[]) AS x(c, v, r, w, p, e)`,
      [
        rows.map((r) => r.clusterId),
        rows.map((r) => r.version),
        rows.map((r) => r.rootKeyVersion),
        rows.map((r) => r.wrappedKey),
        rows.map((r) => r.agentPublicKey),
        rows.map((r) => r.agentEnvelope),
      ],
    );
  }
}
