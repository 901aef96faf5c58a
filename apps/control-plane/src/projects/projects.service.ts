import { Inject, Injectable } from '@nestjs/common';
import type { Actor } from '../auth/policy.js';
import { checkVersion, toPage, type Page } from '../common/http.js';
import { dns1123LabelProblem } from '../common/kubernetes-names.js';
import { ProjectsError, ProjectsErrorCode } from './projects.errors.js';
import type { LabelSelector } from '../common/label-selector.js';
import { isUniqueViolation, violatedConstraint } from '../database/constraint-violation.js';
import type { Tx } from '../database/transaction.js';
import { ProjectNamespacesRepository } from './project-namespaces.repository.js';
import type { ProjectEntity } from './project.entity.js';
import type { CreateProjectDto, UpdateProjectDto } from './projects.dto.js';
import { ProjectsRepository } from './projects.repository.js';

@Injectable()
export class ProjectsService {
  constructor(
    @Inject(ProjectsRepository) private readonly repo: ProjectsRepository,
    @Inject(ProjectNamespacesRepository) private readonly namespaces: ProjectNamespacesRepository,
  ) {}

  /** The project, if it exists and the actor may see it; otherwise "not found" (no existence leak). */
  async resolve(actor: Actor, name: string): Promise<ProjectEntity> {
    // A name that cannot exist is not looked up (and a NUL byte never reaches PostgreSQL).
    const p = dns1123LabelProblem(name) ? null : await this.repo.findByName(name);
    if (!p || !actor.sees(p.id)) throw new ProjectsError(ProjectsErrorCode.ProjectNotFound, `project ${JSON.stringify(name)} not found`);
    return p;
  }

  async list(actor: Actor, after: string | undefined, limit: number): Promise<Page<ProjectEntity>> {
    return toPage(await this.repo.list(after, limit + 1, actor.projectId), limit, (p) => p.name);
  }

  async create(dto: CreateProjectDto): Promise<ProjectEntity> {
    try {
      return await this.repo.insert({ name: dto.name, description: dto.description ?? '' });
    } catch (err) {
      if (isUniqueViolation(err))
        throw new ProjectsError(ProjectsErrorCode.ProjectExists, `project ${JSON.stringify(dto.name)} already exists`);
      throw err;
    }
  }

  async update(actor: Actor, name: string, dto: UpdateProjectDto, expectedVersion: number | undefined): Promise<ProjectEntity> {
    const found = await this.resolve(actor, name);
    const p = await this.repo.updateLocked(found.id, (locked) => {
      checkVersion(expectedVersion, locked.version);
      if (dto.description !== undefined) locked.description = dto.description;
    });
    if (!p) throw new ProjectsError(ProjectsErrorCode.ProjectNotFound, `project ${JSON.stringify(name)} not found`);
    return p;
  }

  async delete(actor: Actor, name: string, expectedVersion: number | undefined): Promise<void> {
    const found = await this.resolve(actor, name);
    await this.repo.deleteLocked(found.id, (p, holds) => {
      checkVersion(expectedVersion, p.version);
      const left = [...(holds.apps ? ['apps'] : []), ...(holds.connections ? ['database connections'] : [])];
      if (left.length > 0)
        throw new ProjectsError(
          ProjectsErrorCode.ProjectNotEmpty,
          `project ${JSON.stringify(name)} still has ${left.join(' and ')}; delete them first`,
        );
    });
  }

  /**
   * Which clusters each project (or only `onlyProjectId`) may publish to (null: none), by project id; in `tx` when given
   * (delivery reads them under its membership lock).
   */
  clusterSelectors(tx?: Tx, onlyProjectId?: string): Promise<Map<string, LabelSelector | null>> {
    return this.repo.clusterSelectors(tx, onlyProjectId);
  }

  /** Admin: sets which clusters the project may publish to, in the caller's transaction (delivery re-applies its placements in it). */
  setClusterSelector(tx: Tx, projectId: string, selector: LabelSelector | null): Promise<void> {
    return this.repo.setClusterSelector(tx, projectId, selector);
  }

  /** The namespaces the project's apps may write Secrets to. */
  async listNamespaces(actor: Actor, name: string): Promise<{ project: ProjectEntity; namespaces: string[] }> {
    const p = await this.resolve(actor, name);
    return { project: p, namespaces: await this.namespaces.list(p.id) };
  }

  /** Whether the project holds `namespace` (an app may target only those). */
  holdsNamespace(projectId: string, namespace: string): Promise<boolean> {
    return this.namespaces.holds(projectId, namespace);
  }

  /** Which of `namespaces` the project does not hold; its set cannot change until `tx` ends. */
  missingNamespacesLocked(projectId: string, namespaces: string[], tx: Tx): Promise<string[]> {
    return this.namespaces.missingLocked(projectId, namespaces, tx);
  }

  /**
   * Admin: the complete set of namespaces the project holds. A namespace has one project: one
   * held by another project, or a dropped one an app still uses, is a 409 and nothing changes.
   */
  async setNamespaces(actor: Actor, name: string, requested: string[]): Promise<{ project: ProjectEntity; namespaces: string[] }> {
    const p = await this.resolve(actor, name);
    const wanted = [...new Set(requested)].sort();
    const reserved = wanted.filter((n) => RESERVED_NAMESPACE.test(n));
    if (reserved.length) {
      throw new ProjectsError(
        ProjectsErrorCode.NamespaceReserved,
        `namespaces of the Kubernetes system (kube-*) cannot be granted: ${reserved.join(', ')}`,
        { details: reserved.map((n) => ({ field: 'namespaces', problem: `${n} is reserved` })) },
      );
    }
    try {
      await this.namespaces.replace(p.id, wanted, actor.name, (elsewhere, stillUsed) => {
        if (elsewhere.length) throw namespaceClaimed(elsewhere);
        if (stillUsed.length) throw namespaceInUse(stillUsed);
      });
    } catch (err) {
      const v = violatedConstraint(err);
      if (v?.constraint === 'project_namespaces_pkey') throw namespaceClaimed(wanted);
      if (v?.constraint === 'apps_namespace_claimed') throw namespaceInUse([]);
      throw err;
    }
    return { project: p, namespaces: wanted };
  }
}

/** kube-system, kube-public, kube-node-lease and any future system namespace. */
const RESERVED_NAMESPACE = /^kube-/;

const namespaceClaimed = (ns: string[]) =>
  new ProjectsError(
    ProjectsErrorCode.NamespaceClaimed,
    `another project holds ${ns.length === 1 ? 'namespace' : 'namespaces'} ${ns.slice(0, 20).join(', ')}`,
  );
const namespaceInUse = (ns: string[]) =>
  new ProjectsError(
    ProjectsErrorCode.NamespaceInUse,
    ns.length
      ? `apps of this project still use ${ns.slice(0, 20).join(', ')}; move or delete them first`
      : 'an app of this project still uses a namespace being dropped; move or delete it first',
  );
