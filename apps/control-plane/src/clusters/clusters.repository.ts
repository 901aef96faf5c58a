import { Inject, Injectable } from '@nestjs/common';
import { DataSource, type FindOptionsWhere, type Repository } from 'typeorm';
import { updateLocked } from '../database/locked-update.js';
import { managerOf, type Tx } from '../database/transaction.js';
import { ClusterEntity, EnrollmentTokenEntity } from './cluster.entity.js';

/** What placements select on: a cluster's id, name and labels. */
export interface ClusterLabels {
  id: string;
  name: string;
  labels: Record<string, string>;
}

/** The clusters and enrollment_tokens tables (registration, labels, state, tokens, generations). */
@Injectable()
export class ClustersRepository {
  private readonly clusters: Repository<ClusterEntity>;
  private readonly tokens: Repository<EnrollmentTokenEntity>;

  constructor(@Inject(DataSource) private readonly ds: DataSource) {
    this.clusters = ds.getRepository(ClusterEntity);
    this.tokens = ds.getRepository(EnrollmentTokenEntity);
  }

  /** Every cluster (or those of `ids`) with its labels, in `tx` when given. */
  labels(tx: Tx | undefined, ids?: string[]): Promise<ClusterLabels[]> {
    const em = managerOf(this.ds, tx);
    return ids
      ? em.query('SELECT id, name, labels FROM clusters WHERE id = ANY($1::uuid[])', [ids])
      : em.query('SELECT id, name, labels FROM clusters');
  }

  /**
   * What the clusters should hold changed (membership, content, a new delivery key): each moves
   * to a new desired generation, in one statement. Returns each cluster with its new generation.
   */
  async bumpDesiredGeneration(tx: Tx | undefined, clusterIds: string[]): Promise<Map<string, string>> {
    const rows = await managerOf(this.ds, tx).query<[Array<{ id: string; g: string }>, number]>(
      'UPDATE clusters SET desired_generation = desired_generation + 1 WHERE id = ANY($1::uuid[]) RETURNING id, desired_generation AS g',
      [clusterIds],
    );
    return new Map(rows[0].map((r) => [r.id, r.g]));
  }

  /** Records a failed build on each cluster (shown as `DeliveryFailed`), in one statement. */
  async setDeliveryError(clusterIds: string[], error: string): Promise<void> {
    if (clusterIds.length === 0) return;
    await this.ds.query('UPDATE clusters SET delivery_error = $2 WHERE id = ANY($1::uuid[])', [clusterIds, error.slice(0, 500)]);
  }

  findByName(name: string): Promise<ClusterEntity | null> {
    return this.clusters.findOneBy({ name });
  }

  list(after: string | undefined, limit: number, labels: Record<string, string> | undefined): Promise<ClusterEntity[]> {
    const q = this.clusters.createQueryBuilder('c').orderBy('c.name', 'ASC').take(limit);
    if (after !== undefined) q.andWhere('c.name > :after', { after });
    if (labels) q.andWhere('c.labels @> :labels', { labels: JSON.stringify(labels) });
    return q.getMany();
  }

  insert(c: Pick<ClusterEntity, 'name' | 'labels' | 'kubernetesIdentity'>): Promise<ClusterEntity> {
    return this.clusters.save(
      this.clusters.create({
        ...c,
        state: 'registered',
        enrolledAt: null,
        agentVersion: null,
        lastSeenAt: null,
        desiredGeneration: 0n,
        appliedGeneration: 0n,
        builtGeneration: 0n,
        deliveryError: null,
      }),
    );
  }

  /** Row-locked read-modify-write (see updateLocked). null: no such cluster. */
  updateLocked(name: string, mutate: (c: ClusterEntity) => void): Promise<ClusterEntity | null> {
    return updateLocked(this.clusters.manager, ClusterEntity, { name }, mutate);
  }

  async delete(id: string): Promise<void> {
    await this.clusters.delete({ id } satisfies FindOptionsWhere<ClusterEntity>);
  }

  /** The cluster's newest tokens, without their hashes. */
  enrollmentTokens(clusterId: string, limit: number): Promise<EnrollmentTokenEntity[]> {
    return this.tokens.find({
      select: { id: true, clusterId: true, createdAt: true, expiresAt: true, usedAt: true, createdBy: true },
      where: { clusterId },
      order: { createdAt: 'DESC', id: 'ASC' },
      take: limit,
    });
  }

  /** Deletes the token (used or not) if it is the cluster's; false when there is no such token. */
  async deleteEnrollmentToken(clusterId: string, id: string): Promise<boolean> {
    const r = await this.tokens.delete({ id, clusterId } satisfies FindOptionsWhere<EnrollmentTokenEntity>);
    return (r.affected ?? 0) > 0;
  }

  insertEnrollmentToken(
    t: Pick<EnrollmentTokenEntity, 'clusterId' | 'tokenHash' | 'expiresAt' | 'createdBy'>,
  ): Promise<EnrollmentTokenEntity> {
    return this.tokens.save(this.tokens.create({ ...t, usedAt: null }));
  }
}
