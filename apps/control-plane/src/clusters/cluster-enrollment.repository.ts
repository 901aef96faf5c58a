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
 * Statements are few on purpose (PostgreSQL's cost is per statement): for a batch of
 * enrollments, one read that locks the tokens and their clusters, one write that consumes the
 * tokens and enrolls the clusters.
 */
@Injectable()
export class ClusterEnrollmentRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  private em(tx: Tx | undefined) {
    return managerOf(this.ds, tx);
  }

  /**
   * The tokens (by SHA-256) with their clusters (and each cluster's active delivery key), every
   * row locked. Locked in cluster-id order (ORDER BY applies before FOR UPDATE), so two batches
   * that share clusters wait for each other instead of deadlocking. Keyed by the hash (hex).
   */
  async lockTokens(tx: Tx, tokenHashes: Buffer[]): Promise<Map<string, LockedToken>> {
    if (tokenHashes.length === 0) return new Map();
    const rows = await this.em(tx).query<Array<ClusterRow & { tokenHash: Buffer; tokenId: string; expiresAt: Date; usedAt: Date | null }>>(
      `SELECT t.token_hash AS "tokenHash", t.id AS "tokenId", t.expires_at AS "expiresAt", t.used_at AS "usedAt", ${CLUSTER_COLUMNS}
         FROM enrollment_tokens t JOIN ${CLUSTER_WITH_KEY} ON c.id = t.cluster_id
        WHERE t.token_hash = ANY($1::bytea[]) ORDER BY c.id, t.id FOR UPDATE OF t, c`,
      [tokenHashes],
    );
    return new Map(
      rows.map((r) => [r.tokenHash.toString('hex'), { id: r.tokenId, expiresAt: r.expiresAt, usedAt: r.usedAt, cluster: cluster(r) }]),
    );
  }

  async findClusterByName(name: string): Promise<EnrollingCluster | undefined> {
    const rows = await this.ds.query<ClusterRow[]>(`SELECT ${CLUSTER_COLUMNS} FROM ${CLUSTER_WITH_KEY} WHERE c.name = $1`, [name]);
    return rows[0] && cluster(rows[0]);
  }

  /** The named clusters, locked (in id order, as lockTokens), keyed by name. */
  async lockClustersByName(tx: Tx, names: string[]): Promise<Map<string, EnrollingCluster>> {
    if (names.length === 0) return new Map();
    const rows = await this.em(tx).query<ClusterRow[]>(
      `SELECT ${CLUSTER_COLUMNS} FROM ${CLUSTER_WITH_KEY} WHERE c.name = ANY($1::text[]) ORDER BY c.id FOR UPDATE OF c`,
      [names],
    );
    return new Map(rows.map((r) => [r.name, cluster(r)]));
  }

  /**
   * Enrolled: from now on only certificates for each `agentKeySha256` are accepted (not an
   * operator edit: no version bump). Consumes the tokens (where given) in the same statement,
   * and bumps each desired generation so a snapshot is built for the (possibly new) delivery
   * key; returns the new generations by cluster id.
   */
  async markEnrolled(
    tx: Tx,
    enrolled: Array<{ clusterId: string; tokenId: string | null; agentKeySha256: Buffer; agentVersion: string }>,
  ): Promise<Map<string, string>> {
    if (enrolled.length === 0) return new Map();
    const rows = await this.em(tx).query<[Array<{ id: string; g: string }>, number]>(
      `WITH e AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bytea[], $4::text[]) AS e(cluster_id, token_id, sha, version)),
            used AS (UPDATE enrollment_tokens t SET used_at = now() FROM e WHERE t.id = e.token_id)
       UPDATE clusters c SET state = 'enrolled', enrolled_at = now(), agent_key_sha256 = e.sha, agent_version = e.version, last_seen_at = now(),
                             desired_generation = c.desired_generation + 1
         FROM e WHERE c.id = e.cluster_id RETURNING c.id, c.desired_generation::text AS g`,
      [
        enrolled.map((e) => e.clusterId),
        enrolled.map((e) => e.tokenId),
        enrolled.map((e) => e.agentKeySha256),
        enrolled.map((e) => e.agentVersion),
      ],
    );
    return new Map(rows[0].map((r) => [r.id, r.g]));
  }

  async setAgentKey(id: string, agentKeySha256: Buffer): Promise<void> {
    await this.ds.query('UPDATE clusters SET agent_key_sha256 = $2 WHERE id = $1', [id, agentKeySha256]);
  }
}
