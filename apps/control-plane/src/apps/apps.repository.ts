import { Inject, Injectable } from '@nestjs/common';
import { DataSource, MoreThan, type FindOptionsWhere, type Repository } from 'typeorm';
import { updateLocked } from '../database/locked-update.js';
import { managerOf, type Tx } from '../database/transaction.js';
import { AppEntity } from './app.entity.js';

@Injectable()
export class AppsRepository {
  private readonly repo: Repository<AppEntity>;

  constructor(@Inject(DataSource) private readonly ds: DataSource) {
    this.repo = ds.getRepository(AppEntity);
  }

  findByName(projectId: string, name: string): Promise<AppEntity | null> {
    return this.repo.findOneBy({ projectId, name });
  }

  list(projectId: string, after: string | undefined, limit: number): Promise<AppEntity[]> {
    const where: FindOptionsWhere<AppEntity> = { projectId };
    if (after !== undefined) where.name = MoreThan(after);
    return this.repo.find({ where, order: { name: 'ASC' }, take: limit });
  }

  insert(a: Omit<AppEntity, 'id' | 'createdAt' | 'updatedAt' | 'version'>, tx?: Tx): Promise<AppEntity> {
    const em = managerOf(this.ds, tx);
    return em.save(em.create(AppEntity, a));
  }

  /** Row-locked read-modify-write (see updateLocked). */
  updateLocked(id: string, mutate: (a: AppEntity) => void, tx?: Tx): Promise<AppEntity | null> {
    return updateLocked(managerOf(this.ds, tx), AppEntity, { id }, mutate);
  }

  /** Whether any cluster should hold the app (its Secrets would be orphaned by deleting it). */
  async isPublished(id: string): Promise<boolean> {
    const rows = await this.repo.manager.query<unknown[]>('SELECT 1 FROM cluster_apps WHERE app_id = $1 AND published LIMIT 1', [id]);
    return rows.length > 0;
  }

  async delete(projectId: string, id: string): Promise<void> {
    await this.repo.delete({ projectId, id });
  }
}
