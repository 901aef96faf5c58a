import { Inject, Injectable } from '@nestjs/common';
import { DataSource, type EntityManager } from 'typeorm';

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

  transaction<T>(fn: (em: EntityManager) => Promise<T>): Promise<T> {
    return this.ds.transaction(fn);
  }

  async active(clusterId: string, em: EntityManager = this.ds.manager): Promise<ClusterKeyRow | undefined> {
    const rows = await em.query<ClusterKeyRow[]>(`SELECT ${COLUMNS} FROM cluster_keys WHERE cluster_id = $1 AND state = 'active'`, [
      clusterId,
    ]);
    return rows[0];
  }

  async activeFor(clusterIds: string[], em: EntityManager = this.ds.manager): Promise<Map<string, ClusterKeyRow>> {
    const rows = await em.query<ClusterKeyRow[]>(
      `SELECT ${COLUMNS} FROM cluster_keys WHERE cluster_id = ANY($1::uuid[]) AND state = 'active'`,
      [clusterIds],
    );
    return new Map(rows.map((r) => [r.clusterId, r]));
  }

  /** Locks the cluster's key rows (serialises concurrent issue/rotate) and returns the next version. */
  async lockNextVersion(em: EntityManager, clusterId: string): Promise<number> {
    await em.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`cluster-key:${clusterId}`]);
    const rows = await em.query<Array<{ v: number | null }>>('SELECT max(version) AS v FROM cluster_keys WHERE cluster_id = $1', [
      clusterId,
    ]);
    return (rows[0]?.v ?? 0) + 1;
  }

  async retireActive(em: EntityManager, clusterId: string): Promise<void> {
    await em.query(`UPDATE cluster_keys SET state = 'retired' WHERE cluster_id = $1 AND state = 'active'`, [clusterId]);
  }

  async insert(em: EntityManager, row: Omit<ClusterKeyRow, 'id' | 'state'>): Promise<void> {
    await em.query(
      `INSERT INTO cluster_keys (cluster_id, version, state, root_key_version, wrapped_key, agent_public_key, agent_envelope)
       VALUES ($1, $2, 'active', $3, $4, $5, $6)`,
      [row.clusterId, row.version, row.rootKeyVersion, row.wrappedKey, row.agentPublicKey, row.agentEnvelope],
    );
  }
}
