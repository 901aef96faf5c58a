import { Inject, Injectable } from '@nestjs/common';
import { DataSource, type EntityManager } from 'typeorm';
import type { ClusterState } from '../clusters/cluster.entity.js';
import type { KubernetesIdentity } from '../clusters/kubernetes-identity.js';

export interface EnrollingCluster {
  id: string;
  name: string;
  state: ClusterState;
  kubernetesIdentity: KubernetesIdentity | null;
}

const CLUSTER_COLUMNS = 'id, name, state, kubernetes_identity AS "kubernetesIdentity"';

/** The rows enrollment reads and writes, each under a row lock inside the caller's transaction. */
@Injectable()
export class EnrollmentRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  transaction<T>(fn: (em: EntityManager) => Promise<T>): Promise<T> {
    return this.ds.transaction(fn);
  }

  async lockToken(
    em: EntityManager,
    tokenHash: Buffer,
  ): Promise<{ id: string; clusterId: string; expiresAt: Date; usedAt: Date | null } | undefined> {
    const rows = await em.query<Array<{ id: string; clusterId: string; expiresAt: Date; usedAt: Date | null }>>(
      `SELECT id, cluster_id AS "clusterId", expires_at AS "expiresAt", used_at AS "usedAt"
         FROM enrollment_tokens WHERE token_hash = $1 FOR UPDATE`,
      [tokenHash],
    );
    return rows[0];
  }

  async markTokenUsed(em: EntityManager, id: string): Promise<void> {
    await em.query('UPDATE enrollment_tokens SET used_at = now() WHERE id = $1', [id]);
  }

  async lockClusterById(em: EntityManager, id: string): Promise<EnrollingCluster | undefined> {
    const rows = await em.query<EnrollingCluster[]>(`SELECT ${CLUSTER_COLUMNS} FROM clusters WHERE id = $1 FOR UPDATE`, [id]);
    return rows[0];
  }

  async findClusterByName(name: string): Promise<EnrollingCluster | undefined> {
    const rows = await this.ds.query<EnrollingCluster[]>(`SELECT ${CLUSTER_COLUMNS} FROM clusters WHERE name = $1`, [name]);
    return rows[0];
  }

  async lockClusterByName(em: EntityManager, name: string): Promise<EnrollingCluster | undefined> {
    const rows = await em.query<EnrollingCluster[]>(`SELECT ${CLUSTER_COLUMNS} FROM clusters WHERE name = $1 FOR UPDATE`, [name]);
    return rows[0];
  }

  /** Enrolled: from now on only certificates for `agentKeySha256` are accepted. (Not an operator edit: no version bump.) */
  async markEnrolled(em: EntityManager, id: string, agentKeySha256: Buffer, agentVersion: string): Promise<void> {
    await em.query(
      `UPDATE clusters SET state = 'enrolled', enrolled_at = now(), agent_key_sha256 = $2, agent_version = $3, last_seen_at = now()
        WHERE id = $1`,
      [id, agentKeySha256, agentVersion],
    );
  }

  async setAgentKey(id: string, agentKeySha256: Buffer): Promise<void> {
    await this.ds.query('UPDATE clusters SET agent_key_sha256 = $2 WHERE id = $1', [id, agentKeySha256]);
  }
}
