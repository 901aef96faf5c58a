import { Inject, Injectable } from '@nestjs/common';
import { DataSource, MoreThan, type FindOptionsWhere, type Repository } from 'typeorm';
import type { LabelSelector } from '../common/label-selector.js';
import { updateLocked } from '../database/locked-update.js';
import { managerOf, type Tx } from '../database/transaction.js';
import { ProjectEntity } from './project.entity.js';

@Injectable()
export class ProjectsRepository {
  private readonly repo: Repository<ProjectEntity>;

  constructor(@Inject(DataSource) private readonly ds: DataSource) {
    this.repo = ds.getRepository(ProjectEntity);
  }

  findByName(name: string): Promise<ProjectEntity | null> {
    return this.repo.findOneBy({ name });
  }

  /** `onlyId` restricts to one project (a project-scoped token). */
  list(after: string | undefined, limit: number, onlyId: string | null): Promise<ProjectEntity[]> {
    const where: FindOptionsWhere<ProjectEntity> = {};
    if (after !== undefined) where.name = MoreThan(after);
    if (onlyId !== null) where.id = onlyId;
    return this.repo.find({ where, order: { name: 'ASC' }, take: limit });
  }

  insert(p: Pick<ProjectEntity, 'name' | 'description'>): Promise<ProjectEntity> {
    return this.repo.save(this.repo.create(p));
  }

  /** Row-locked read-modify-write (see updateLocked). */
  updateLocked(id: string, mutate: (p: ProjectEntity) => void): Promise<ProjectEntity | null> {
    return updateLocked(this.repo.manager, ProjectEntity, { id }, mutate);
  }

  /**
   * Deletes under a row lock after `check`, told what the project still holds (apps, database
   * connections: both refer to it); one created concurrently waits, then fails its FK.
   */
  deleteLocked(id: string, check: (p: ProjectEntity, holds: { apps: boolean; connections: boolean }) => void): Promise<void> {
    return this.repo.manager.transaction(async (em) => {
      const p = await em.findOne(ProjectEntity, { where: { id }, lock: { mode: 'pessimistic_write' } });
      if (!p) return;
      const [holds] = await em.query<Array<{ apps: boolean; connections: boolean }>>(
        `SELECT EXISTS (SELECT 1 FROM apps WHERE project_id = $1) AS apps,
                EXISTS (SELECT 1 FROM database_connections WHERE project_id = $1) AS connections`,
        [id],
      );
      check(p, holds!);
      await em.delete(ProjectEntity, { id });
    });
  }

  /** Every project's (or only `onlyId`'s) cluster selector (null: may publish nowhere), by project id. */
  async clusterSelectors(tx?: Tx, onlyId?: string): Promise<Map<string, LabelSelector | null>> {
    const em = managerOf(this.ds, tx);
    const rows = await (onlyId === undefined
      ? em.query<Array<{ id: string; s: LabelSelector | null }>>('SELECT id, cluster_selector AS s FROM projects')
      : em.query<Array<{ id: string; s: LabelSelector | null }>>('SELECT id, cluster_selector AS s FROM projects WHERE id = $1', [onlyId]));
    return new Map(rows.map((r) => [r.id, r.s]));
  }

  /** An operator edit: bumps the row's version (its ETag). */
  async setClusterSelector(tx: Tx, projectId: string, selector: LabelSelector | null): Promise<void> {
    await managerOf(this.ds, tx).query(
      'UPDATE projects SET cluster_selector = $2, updated_at = now(), version = version + 1 WHERE id = $1',
      [projectId, selector === null ? null : JSON.stringify(selector)],
    );
  }
}
