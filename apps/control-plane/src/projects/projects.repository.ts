import { Inject, Injectable } from '@nestjs/common';
import { updateLocked } from '../database/locked-update.js';
import { DataSource, MoreThan, type FindOptionsWhere, type Repository } from 'typeorm';
import { ProjectEntity } from './project.entity.js';

@Injectable()
export class ProjectsRepository {
  private readonly repo: Repository<ProjectEntity>;

  constructor(@Inject(DataSource) ds: DataSource) {
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

  /** Deletes under a row lock after `check`; an app created concurrently waits, then fails its FK. */
  deleteLocked(id: string, check: (p: ProjectEntity, hasApps: boolean) => void): Promise<void> {
    return this.repo.manager.transaction(async (em) => {
      const p = await em.findOne(ProjectEntity, { where: { id }, lock: { mode: 'pessimistic_write' } });
      if (!p) return;
      const apps = await em.query<unknown[]>('SELECT 1 FROM apps WHERE project_id = $1 LIMIT 1', [id]);
      check(p, apps.length > 0);
      await em.delete(ProjectEntity, { id });
    });
  }
}
