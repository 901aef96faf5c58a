import type { KubernetesIdentity } from './kubernetes-identity.js';
import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn, UpdateDateColumn, VersionColumn } from 'typeorm';

/** PostgreSQL bigint ↔ JS bigint (pg returns bigint columns as strings). */
export const bigintColumn = {
  to: (v: bigint | undefined) => (v === undefined ? undefined : v.toString()),
  from: (v: string | null) => (v === null ? null : BigInt(v)),
};

export type ClusterState = 'registered' | 'enrolled' | 'disabled';

@Entity({ name: 'clusters' })
export class ClusterEntity {
  @PrimaryGeneratedColumn('uuid')
  id!: string;

  @Column({ type: 'text', unique: true })
  name!: string;

  @Column({ type: 'jsonb', default: {} })
  labels!: Record<string, string>;

  /** registered → enrolled (agent joined); disabled cuts the agent off at once. */
  @Column({ type: 'text' })
  state!: ClusterState;

  /** Whether the cluster was enrolled before being disabled (enable returns to it). */
  @Column({ name: 'enrolled_at', type: 'timestamptz', nullable: true })
  enrolledAt!: Date | null;

  /** Enrollment by Kubernetes service-account identity; null: bootstrap tokens only. */
  @Column({ name: 'kubernetes_identity', type: 'jsonb', nullable: true })
  kubernetesIdentity!: KubernetesIdentity | null;

  /** SHA-256 of the enrolled agent's TLS public key (SPKI): only certificates for it are accepted. */
  @Column({ name: 'agent_key_sha256', type: 'bytea', nullable: true, select: false })
  agentKeySha256!: Buffer | null;

  /** Grows whenever what the cluster should hold changes; Watch pushes it. */
  @Column({ name: 'desired_generation', type: 'bigint', transformer: bigintColumn })
  desiredGeneration!: bigint;

  /**
   * The generation of the cluster's built snapshot (cluster_secrets): the delivery job moves it
   * up to desiredGeneration (delivery/snapshot-build.repository.ts, set-based, many clusters a statement).
   */
  @Column({ name: 'built_generation', type: 'bigint', transformer: bigintColumn, default: 0 })
  builtGeneration!: bigint;

  /** Why the last build for the cluster failed (shown as `DeliveryFailed`); cleared by the next build. */
  @Column({ name: 'delivery_error', type: 'text', nullable: true })
  deliveryError!: string | null;

  /** The last generation the agent reported as applied. */
  @Column({ name: 'applied_generation', type: 'bigint', transformer: bigintColumn })
  appliedGeneration!: bigint;

  @Column({ name: 'agent_version', type: 'text', nullable: true })
  agentVersion!: string | null;

  @Column({ name: 'last_seen_at', type: 'timestamptz', nullable: true })
  lastSeenAt!: Date | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;

  @VersionColumn()
  version!: number;
}

/** One-time enrollment token: only its SHA-256 is stored. */
@Entity({ name: 'enrollment_tokens' })
export class EnrollmentTokenEntity {
  @PrimaryGeneratedColumn('uuid')
  id!: string;

  @Column({ name: 'cluster_id', type: 'uuid' })
  clusterId!: string;

  @Column({ name: 'token_hash', type: 'bytea' })
  tokenHash!: Buffer;

  @Column({ name: 'expires_at', type: 'timestamptz' })
  expiresAt!: Date;

  @Column({ name: 'used_at', type: 'timestamptz', nullable: true })
  usedAt!: Date | null;

  @Column({ name: 'created_by', type: 'text' })
  createdBy!: string;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;
}
