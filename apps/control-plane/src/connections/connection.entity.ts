import { Column, CreateDateColumn, Entity, PrimaryColumn, UpdateDateColumn, VersionColumn } from 'typeorm';
import type { EngineName, TlsMode } from './engines/credential-engine.js';

/** A database dynamic secrets create roles in (docs/dynamic-secrets.md, "Connections"). No password: only the sealed value's id. */
@Entity({ name: 'database_connections' })
export class DatabaseConnectionEntity {
  /** Chosen by the service before the insert: the admin password's AAD and the default role prefix name it. */
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  @Column({ name: 'project_id', type: 'uuid' })
  projectId!: string;

  @Column({ type: 'text' })
  name!: string;

  @Column({ type: 'text' })
  engine!: EngineName;

  @Column({ type: 'text' })
  host!: string;

  @Column({ type: 'integer' })
  port!: number;

  @Column({ type: 'text' })
  database!: string;

  /** The admin role Sigil connects as. */
  @Column({ type: 'text' })
  username!: string;

  @Column({ name: 'tls_mode', type: 'text' })
  tlsMode!: TlsMode;

  @Column({ name: 'ca_certificate', type: 'text', nullable: true })
  caCertificate!: string | null;

  /** Fixed at creation: every role made through this connection starts with it. */
  @Column({ name: 'role_prefix', type: 'text' })
  rolePrefix!: string;

  @Column({ name: 'admin_password_sealed_value_id', type: 'uuid' })
  adminPasswordSealedValueId!: string;

  @Column({ name: 'admin_password_set_at', type: 'timestamptz' })
  adminPasswordSetAt!: Date;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;

  @VersionColumn()
  version!: number;
}
