import type { DynamicSpec } from './dynamic-spec.js';
import type { GeneratorSpec } from './generator.js';
import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn, UpdateDateColumn, VersionColumn } from 'typeorm';

/** A secret of an app: one Kubernetes Secret in each cluster, with immutable versions. */
@Entity({ name: 'secrets' })
export class SecretEntity {
  @PrimaryGeneratedColumn('uuid')
  id!: string;

  @Column({ name: 'project_id', type: 'uuid' })
  projectId!: string;

  @Column({ name: 'app_id', type: 'uuid' })
  appId!: string;

  /** The app's namespace, kept equal by the database: (namespace, name) has one owner fleet-wide. */
  @Column({ type: 'text' })
  namespace!: string;

  /** Also the Kubernetes Secret's name. */
  @Column({ type: 'text' })
  name!: string;

  @Column({ type: 'text' })
  type!: string;

  /** The version delivered to clusters (moves back on rollback). */
  @Column({ name: 'current_version', type: 'integer' })
  currentVersion!: number;

  @Column({ name: 'latest_version', type: 'integer' })
  latestVersion!: number;

  /** Generated secrets: how each key's value is made (never a value); null for typed secrets. */
  @Column({ type: 'jsonb', nullable: true })
  generator!: GeneratorSpec | null;

  /**
   * Dynamic secrets: the recipe of each cluster's own credential (never a value); null otherwise.
   * A dynamic secret has no versions: each cluster's lease is its version (leases/).
   */
  @Column({ type: 'jsonb', nullable: true })
  dynamic!: DynamicSpec | null;

  /** Generated secrets: a new version every N days (null: no schedule). */
  @Column({ name: 'rotate_every_days', type: 'integer', nullable: true })
  rotateEveryDays!: number | null;

  /** When the rotation sweep makes the next version (null exactly when there is no schedule). */
  @Column({ name: 'next_rotation_at', type: 'timestamptz', nullable: true })
  nextRotationAt!: Date | null;

  /** When the current generated values were made (creation, a rotation); the schedule counts from here. */
  @Column({ name: 'last_rotated_at', type: 'timestamptz', nullable: true })
  lastRotatedAt!: Date | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;

  /** Row version, for ETag / If-Match. */
  @VersionColumn()
  version!: number;
}

/** One immutable version: which keys it has, their fingerprints, and the sealed value (ciphertext). */
@Entity({ name: 'secret_versions' })
export class SecretVersionEntity {
  @PrimaryGeneratedColumn('uuid')
  id!: string;

  @Column({ name: 'secret_id', type: 'uuid' })
  secretId!: string;

  @Column({ type: 'integer' })
  version!: number;

  @Column({ name: 'sealed_value_id', type: 'uuid' })
  sealedValueId!: string;

  @Column({ type: 'text', array: true })
  keys!: string[];

  /** key → HMAC fingerprint (from the HSM); reveals nothing about the value. */
  @Column({ type: 'jsonb' })
  fingerprints!: Record<string, string>;

  @Column({ name: 'size_bytes', type: 'integer' })
  sizeBytes!: number;

  @Column({ name: 'created_by', type: 'text' })
  createdBy!: string;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;
}
