import { Inject, Injectable } from '@nestjs/common';
import { QueryFailedError } from 'typeorm';
import type { Actor } from '../auth/policy.js';
import { checkVersion, toPage, type Page } from '../common/http.js';
import { dns1123LabelProblem } from '../common/kubernetes-names.js';
import { conflict, notFound } from '../common/sigil-error.js';
import type { ProjectEntity } from './project.entity.js';
import type { CreateProjectDto, UpdateProjectDto } from './projects.dto.js';
import { ProjectsRepository } from './projects.repository.js';

export const isUniqueViolation = (err: unknown) =>
  err instanceof QueryFailedError && (err.driverError as { code?: string }).code === '23505';

@Injectable()
export class ProjectsService {
  constructor(@Inject(ProjectsRepository) private readonly repo: ProjectsRepository) {}

  /** The project, if it exists and the actor may see it; otherwise "not found" (no existence leak). */
  async resolve(actor: Actor, name: string): Promise<ProjectEntity> {
    // A name that cannot exist is not looked up (and a NUL byte never reaches PostgreSQL).
    const p = dns1123LabelProblem(name) ? null : await this.repo.findByName(name);
    if (!p || !actor.sees(p.id)) throw notFound(`project ${JSON.stringify(name)}`, 'project_not_found');
    return p;
  }

  async list(actor: Actor, after: string | undefined, limit: number): Promise<Page<ProjectEntity>> {
    return toPage(await this.repo.list(after, limit + 1, actor.projectId), limit, (p) => p.name);
  }

  async create(dto: CreateProjectDto): Promise<ProjectEntity> {
    try {
      return await this.repo.insert({ name: dto.name, description: dto.description ?? '' });
    } catch (err) {
      if (isUniqueViolation(err)) throw conflict('project_exists', `project ${JSON.stringify(dto.name)} already exists`);
      throw err;
    }
  }

  async update(actor: Actor, name: string, dto: UpdateProjectDto, expectedVersion: number | undefined): Promise<ProjectEntity> {
    const found = await this.resolve(actor, name);
    const p = await this.repo.updateLocked(found.id, (locked) => {
      checkVersion(expectedVersion, locked.version);
      if (dto.description !== undefined) locked.description = dto.description;
    });
    if (!p) throw notFound(`project ${JSON.stringify(name)}`, 'project_not_found');
    return p;
  }

  async delete(actor: Actor, name: string, expectedVersion: number | undefined): Promise<void> {
    const found = await this.resolve(actor, name);
    await this.repo.deleteLocked(found.id, (p, hasApps) => {
      checkVersion(expectedVersion, p.version);
      if (hasApps) throw conflict('project_not_empty', `project ${JSON.stringify(name)} still has apps; delete them first`);
    });
  }
}
