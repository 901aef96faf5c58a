import { Column, CreateDateColumn, Entity, PrimaryColumn, UpdateDateColumn } from 'typeorm';

export const LEASE_STATES = ['intent', 'active', 'superseded', 'revoking', 'revoked', 'failed'] as const;
export type LeaseState = (typeof LEASE_STATES)[number];

/**
 * One cluster's credential of a dynamic secret (docs/dynamic-secrets.md, "Leases"): the role
 * Sigil created for it in the target database, its lifetime, and where it stands. `serial` is
 * that cluster's version of the secret. Written as an intent before the role exists.
 */
@Entity({ name: 'credential_leases' })
export class LeaseEntity {
  @PrimaryColumn('uuid')
  id!: string;

  @Column({ name: 'project_id', type: 'uuid' })
  projectId!: string;

  @Column({ name: 'app_id', type: 'uuid' })
  appId!: string;

  @Column({ name: 'secret_id', type: 'uuid' })
  secretId!: string;

  @Column({ name: 'cluster_id', type: 'uuid' })
  clusterId!: string;

  @Column({ name: 'connection_id', type: 'uuid' })
  connectionId!: string;

  @Column({ type: 'integer' })
  serial!: number;

  @Column({ name: 'role_name', type: 'text' })
  roleName!: string;

  @Column({ type: 'text' })
  state!: LeaseState;

  @Column({ name: 'revocation_statements', type: 'text', array: true })
  revocationStatements!: string[];

  /** The rendered keys sealed as one value (like a secret version); null until active. */
  @Column({ name: 'sealed_value_id', type: 'uuid', nullable: true })
  sealedValueId!: string | null;

  @Column({ name: 'issued_at', type: 'timestamptz', nullable: true })
  issuedAt!: Date | null;

  @Column({ name: 'expires_at', type: 'timestamptz' })
  expiresAt!: Date;

  @Column({ name: 'renew_at', type: 'timestamptz' })
  renewAt!: Date;

  @Column({ name: 'grace_seconds', type: 'integer' })
  graceSeconds!: number;

  /** Superseded: revoked from then on (set when the cluster reported the successor applied, plus the grace). */
  @Column({ name: 'revoke_after', type: 'timestamptz', nullable: true })
  revokeAfter!: Date | null;

  @Column({ name: 'revoked_at', type: 'timestamptz', nullable: true })
  revokedAt!: Date | null;

  /** Why it was revoked: superseded, expired, not_desired, manual, interrupted. */
  @Column({ name: 'revoke_reason', type: 'text', nullable: true })
  revokeReason!: string | null;

  @Column({ type: 'integer' })
  attempts!: number;

  @Column({ name: 'next_attempt_at', type: 'timestamptz' })
  nextAttemptAt!: Date;

  /** The engine's error code and a message free of any password. */
  @Column({ name: 'last_error', type: 'text', nullable: true })
  lastError!: string | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;
}
