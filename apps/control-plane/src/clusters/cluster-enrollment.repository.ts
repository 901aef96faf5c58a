import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { managerOf, type Tx } from '../database/transaction.js';
import type { ClusterState } from './cluster.entity.js';
import type { KubernetesIdentity } from './kubernetes-identity.js';

export interface EnrollingCluster {
  id: string;
  name: string;
  state: ClusterState;
  kubernetesIdentity: KubernetesIdentity | null;
  /** SHA-256 of the TLS key its latest enrollment (or renewal) certified; null before the first. */
  agentKeySha256: Buffer | null;
  /** The active delivery key's agent RSA public key and SGK1 envelope, if it has one. */
  activeKey: { agentPublicKey: Buffer; envelope: Buffer } | null;
}

export interface LockedToken {
  id: string;
  expiresAt: Date;
  usedAt: Date | null;
  cluster: EnrollingCluster;
}

interface ClusterRow {
  id: string;
  name: string;
  state: ClusterState;
  kubernetesIdentity: KubernetesIdentity | null;
  agentKeySha256: Buffer | null;
  agentPublicKey: Buffer | null;
  agentEnvelope: Buffer | null;
}

/** The cluster and its active delivery key in one row (an enrollment reads both, under the cluster's lock). */
const CLUSTER_COLUMNS = `c.id, c.name, c.state, c.kubernetes_identity AS "kubernetesIdentity", c.agent_key_sha256 AS "agentKeySha256",
  k.agent_public_key AS "agentPublicKey", k.agent_envelope AS "agentEnvelope"`;
const CLUSTER_WITH_KEY = `clusters c LEFT JOIN cluster_keys k ON k.cluster_id = c.id AND k.state = 'active'`;

const cluster = (r: ClusterRow): EnrollingCluster => ({
  id: r.id,
  name: r.name,
  state: r.state,
  kubernetesIdentity: r.kubernetesIdentity,
  agentKeySha256: r.agentKeySha256,
  activeKey: r.agentPublicKey && r.agentEnvelope ? { agentPublicKey: r.agentPublicKey, envelope: r.agentEnvelope } : null,
});

/**
 * The cluster and enrollment-token rows enrollment (enrollment/enrollment.service.ts) reads and
 * writes, each under a row lock inside the caller's transaction; here because clusters/ owns
 * both tables, exported by ClustersModule for enrollment alone.
 * Statements are few on purpose (PostgreSQL's cost is per statement): one read that locks the
 * token and its cluster, one write that consumes the token and enrolls the cluster.
 */
@Injectable()
export class ClusterEnrollmentRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  private em(tx: Tx | undefined) {
    return managerOf(this.ds, tx);
  }

  /** The token with its cluster (and that cluster's active delivery key), both rows locked. */
  async lockToken(tx: Tx, tokenHash: Buffer): Promise<LockedToken | undefined> {
    const rows = await this.em(tx).query<Array<ClusterRow & { tokenId: string; expiresAt: Date; usedAt: Date | null }>>(
      `SELECT t.id AS "tokenId", t.expires_at AS "expiresAt", t.used_at AS "usedAt", ${CLUSTER_COLUMNS}
         FROM enrollment_tokens t JOIN ${CLUSTER_WITH_KEY} ON c.id = t.cluster_id
        WHERE t.token_hash = $1 FOR UPDATE OF t, c`,
      [tokenHash],
    );
    const r = rows[0];
    return r && { id: r.tokenId, expiresAt: r.expiresAt, usedAt: r.usedAt, cluster: cluster(r) };
  }

  async findClusterByName(name: string): Promise<EnrollingCluster | undefined> {
    const rows = await this.ds.query<ClusterRow[]>(`SELECT ${CLUSTER_COLUMNS} FROM ${CLUSTER_WITH_KEY} WHERE c.name = $1`, [name]);
    return rows[0] && cluster(rows[0]);
  }

  async lockClusterByName(tx: Tx, name: string): Promise<EnrollingCluster | undefined> {
    const rows = await this.em(tx).query<ClusterRow[]>(
      `SELECT ${CLUSTER_COLUMNS} FROM ${CLUSTER_WITH_KEY} WHERE c.name = $1 FOR UPDATE OF c`,
      [name],
    );
    return rows[0] && cluster(rows[0]);
  }

  /**
   * Enrolled: from now on only certificates for `agentKeySha256` are accepted (not an operator
   * edit: no version bump). Consumes the token (if any) in the same statement, and bumps the
   * desired generation so a snapshot is built for the (possibly new) delivery key; returns it.
   */
  async markEnrolled(
    tx: Tx,
    e: { clusterId: string; tokenId: string | null; agentKeySha256: Buffer; agentVersion: string },
  ): Promise<string> {
    const rows = await this.em(tx).query<[Array<{ g: string }>, number]>(
      `WITH used AS (UPDATE enrollment_tokens SET used_at = now() WHERE id = $4::uuid)
       UPDATE clusters SET state = 'enrolled', enrolled_at = now(), agent_key_sha256 = $2, agent_version = $3, last_seen_at = now(),
                           desired_generation = desired_generation + 1
        WHERE id = $1 RETURNING desired_generation::text AS g`,
      [e.clusterId, e.agentKeySha256, e.agentVersion, e.tokenId],
    );
    return rows[0][0]!.g;
  }

  async setAgentKey(id: string, agentKeySha256: Buffer): Promise<void> {
    await this.ds.query('UPDATE clusters SET agent_key_sha256 = $2 WHERE id = $1', [id, agentKeySha256]);
  }
}
