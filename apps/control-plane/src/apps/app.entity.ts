import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn, UpdateDateColumn, VersionColumn } from 'typeorm';

export type DeliveryMode = 'env' | 'volume' | 'inject';

export const DELIVERY_MODES: readonly DeliveryMode[] = ['env', 'volume', 'inject'];

/** Pods that may receive an inject app's values: a namespace and a service account of it (`*`: any). */
export interface AppConsumer {
  namespace: string;
  serviceAccount: string;
}

/** An application: where its Secrets go in each cluster and how pods consume them. */
@Entity({ name: 'apps' })
export class AppEntity {
  @PrimaryGeneratedColumn('uuid')
  id!: string;

  @Column({ name: 'project_id', type: 'uuid' })
  projectId!: string;

  @Column({ type: 'text' })
  name!: string;

  /** Target namespace in every cluster the app is published to. */
  @Column({ type: 'text' })
  namespace!: string;

  @Column({ name: 'delivery_mode', type: 'text' })
  deliveryMode!: DeliveryMode;

  /** Inject mode: who may receive the values (kept, and ignored, in the other modes). */
  @Column({ type: 'jsonb', default: () => "'[]'" })
  consumers!: AppConsumer[];

  /** Default Kubernetes Secret type of the app's secrets. */
  @Column({ name: 'secret_type', type: 'text' })
  secretType!: string;

  /** Volume mode: directory under which each secret is mounted (one subdirectory per secret). */
  @Column({ name: 'mount_path', type: 'text' })
  mountPath!: string;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;

  @VersionColumn()
  version!: number;
}
