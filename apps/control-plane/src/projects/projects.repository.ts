import { Inject, Injectable } from '@nestjs/common';
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

  save(p: ProjectEntity): Promise<ProjectEntity> {
    return this.repo.save(p);
  }

  async delete(id: string): Promise<void> {
    await this.repo.delete({ id });
  }

  async hasApps(id: string): Promise<boolean> {
    const rows = await this.repo.manager.query<unknown[]>('SELECT 1 FROM apps WHERE project_id = $1 LIMIT 1', [id]);
    return rows.length > 0;
  }
}
