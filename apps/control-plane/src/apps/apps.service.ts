import { Inject, Injectable } from '@nestjs/common';
import type { Actor } from '../auth/policy.js';
import { checkVersion, toPage, type Page } from '../common/http.js';
import { dns1123LabelProblem } from '../common/kubernetes-names.js';
import { AppsError, AppsErrorCode } from './apps.errors.js';
import { isUniqueViolation, violatedConstraint } from '../database/constraint-violation.js';
import { UnitOfWork, type Tx } from '../database/transaction.js';
import type { ProjectEntity } from '../projects/project.entity.js';
import { ProjectsService } from '../projects/projects.service.js';
import type { AppEntity } from './app.entity.js';
import type { CreateAppDto, UpdateAppDto } from './apps.dto.js';
import { AppsRepository } from './apps.repository.js';
import { MembershipService } from '../delivery/membership.service.js';
import { checkConsumers, normalizeConsumers } from './consumers.js';

@Injectable()
export class AppsService {
  constructor(
    @Inject(ProjectsService) private readonly projects: ProjectsService,
    @Inject(AppsRepository) private readonly repo: AppsRepository,
    @Inject(MembershipService) private readonly membership: MembershipService,
    @Inject(UnitOfWork) private readonly uow: UnitOfWork,
  ) {}

  async resolve(actor: Actor, project: string, name: string): Promise<{ project: ProjectEntity; app: AppEntity }> {
    const p = await this.projects.resolve(actor, project);
    const app = dns1123LabelProblem(name) ? null : await this.repo.findByName(p.id, name);
    if (!app) throw new AppsError(AppsErrorCode.AppNotFound, `app ${JSON.stringify(name)} not found`);
    return { project: p, app };
  }

  async list(
    actor: Actor,
    project: string,
    after: string | undefined,
    limit: number,
  ): Promise<{ project: ProjectEntity; page: Page<AppEntity> }> {
    const p = await this.projects.resolve(actor, project);
    return { project: p, page: toPage(await this.repo.list(p.id, after, limit + 1), limit, (a) => a.name) };
  }

  async create(actor: Actor, project: string, dto: CreateAppDto): Promise<{ project: ProjectEntity; app: AppEntity }> {
    const consumers = normalizeConsumers(dto.consumers ?? []);
    checkConsumers(dto.deliveryMode, consumers);
    const p = await this.projects.resolve(actor, project);
    await this.checkNamespace(p, dto.namespace);
    try {
      const app = await this.uow.run(async (tx) => {
        await this.checkConsumerNamespaces(p, consumers, tx);
        return this.repo.insert(
          {
            projectId: p.id,
            name: dto.name,
            namespace: dto.namespace,
            deliveryMode: dto.deliveryMode,
            consumers,
            secretType: dto.secretType ?? 'Opaque',
            mountPath: dto.mountPath ?? '/etc/sigil',
          },
          tx,
        );
      });
      return { project: p, app };
    } catch (err) {
      if (violatedConstraint(err)?.constraint === 'apps_namespace_claimed') throw namespaceNotGranted(p, dto.namespace);
      if (isUniqueViolation(err))
        throw new AppsError(
          AppsErrorCode.AppExists,
          `app ${JSON.stringify(dto.name)} already exists in project ${JSON.stringify(project)}`,
        );
      throw err;
    }
  }

  async update(actor: Actor, project: string, name: string, dto: UpdateAppDto, expectedVersion: number | undefined) {
    const { project: p, app: found } = await this.resolve(actor, project, name);
    // Checked before anything is locked, and again on the locked row (a concurrent update may have changed either field).
    checkConsumers(dto.deliveryMode ?? found.deliveryMode, dto.consumers ?? found.consumers);
    if (dto.namespace !== undefined && dto.namespace !== found.namespace) await this.checkNamespace(p, dto.namespace);
    let app: AppEntity | null;
    try {
      // Moving the app moves its secrets (ON UPDATE CASCADE): a name taken in the new namespace fails the update.
      // Every cluster holding the app moves to a new generation in the same transaction, so the
      // agents write the Secrets where they now belong and delete them where they were; a new
      // delivery mode or consumers list resends the app's secrets in full (deliveryShape).
      app = await this.membership.appContentChange(
        found.id,
        async (tx) => {
          if (dto.consumers !== undefined) await this.checkConsumerNamespaces(p, normalizeConsumers(dto.consumers), tx);
          return this.repo.updateLocked(
            found.id,
            (a) => {
              checkVersion(expectedVersion, a.version);
              if (dto.namespace !== undefined) a.namespace = dto.namespace;
              if (dto.deliveryMode !== undefined) a.deliveryMode = dto.deliveryMode;
              if (dto.consumers !== undefined) a.consumers = normalizeConsumers(dto.consumers);
              checkConsumers(a.deliveryMode, a.consumers);
              if (dto.secretType !== undefined) a.secretType = dto.secretType;
              if (dto.mountPath !== undefined) a.mountPath = dto.mountPath;
            },
            tx,
          );
        },
        { relocated: dto.namespace !== undefined && dto.namespace !== found.namespace },
      );
    } catch (err) {
      const v = violatedConstraint(err)?.constraint;
      if (v === 'apps_namespace_claimed') throw namespaceNotGranted(p, dto.namespace!);
      if (v === 'secrets_target_unique') {
        throw new AppsError(
          AppsErrorCode.SecretTargetConflict,
          `another app already delivers a Secret of the same name in namespace ${dto.namespace}; each Kubernetes Secret has one owner`,
        );
      }
      throw err;
    }
    if (!app) throw new AppsError(AppsErrorCode.AppNotFound, `app ${JSON.stringify(name)} not found`);
    return { project: p, app };
  }

  /** An app targets only a namespace its project holds (docs/decisions/008). */
  private async checkNamespace(p: ProjectEntity, namespace: string): Promise<void> {
    if (!(await this.projects.holdsNamespace(p.id, namespace))) throw namespaceNotGranted(p, namespace);
  }

  /**
   * An inject app's consumers are pods of namespaces its project holds: a namespace has one
   * project, so a pod's namespace and an app name always name one app, and no project can hand
   * its values to pods of another's namespaces. Checked in the transaction that writes the
   * consumers, with the project's namespaces locked: an admin dropping one at the same moment
   * either waits and then sees it in use (409), or goes first and this refuses (403).
   */
  private async checkConsumerNamespaces(p: ProjectEntity, consumers: ReadonlyArray<{ namespace: string }>, tx: Tx): Promise<void> {
    const namespaces = [...new Set(consumers.map((c) => c.namespace))];
    if (namespaces.length === 0) return;
    const [missing] = await this.projects.missingNamespacesLocked(p.id, namespaces, tx);
    if (missing !== undefined)
      throw new AppsError(
        AppsErrorCode.NamespaceNotGranted,
        `project ${p.name} does not hold namespace ${missing} of a consumer; an admin grants it (PUT /projects/${p.name}/namespaces)`,
      );
  }

  async delete(actor: Actor, project: string, name: string, expectedVersion: number | undefined): Promise<void> {
    const { project: p, app } = await this.resolve(actor, project, name);
    checkVersion(expectedVersion, app.version);
    if (await this.repo.isPublished(app.id)) {
      throw new AppsError(
        AppsErrorCode.AppPublished,
        `app ${JSON.stringify(name)} is published; unpublish it first so clusters delete its Secrets`,
      );
    }
    await this.repo.delete(p.id, app.id); // its secrets and versions go with it (ON DELETE CASCADE)
  }
}

const namespaceNotGranted = (p: ProjectEntity, namespace: string) =>
  new AppsError(
    AppsErrorCode.NamespaceNotGranted,
    `project ${p.name} does not hold namespace ${namespace}; an admin grants it (PUT /projects/${p.name}/namespaces)`,
  );
