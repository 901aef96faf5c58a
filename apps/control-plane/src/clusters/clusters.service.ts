import { randomBytes } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import type { Actor } from '../auth/policy.js';
import { hashToken } from '../auth/bootstrap-admin-token.js';
import { checkVersion, toPage, type Page } from '../common/http.js';
import { dns1123LabelProblem } from '../common/kubernetes-names.js';
import { ClustersError, ClustersErrorCode } from './clusters.errors.js';
import { isUniqueViolation } from '../database/constraint-violation.js';
import type { Tx } from '../database/transaction.js';
import { matches, type LabelSelector } from '../common/label-selector.js';
import { ClusterEvents } from '../events/cluster-events.js';
import { ProjectsService } from '../projects/projects.service.js';
import type { ClusterEntity, EnrollmentTokenEntity } from './cluster.entity.js';
import type { KubernetesIdentity } from './kubernetes-identity.js';
import { ClustersRepository, type ClusterLabels } from './clusters.repository.js';

export type { ClusterLabels };

/** Told, and awaited, when a cluster was registered or relabelled (delivery re-applies placements to it). */
export type ClusterChangeListener = (clusterId: string) => Promise<void>;

export const DEFAULT_ENROLLMENT_TTL_S = 3600;
/** Rows read per round when a listing is filtered by the caller's scope. */
const SCOPE_BATCH = 500;
/** Long enough to hand a token to an installer run; a token that is needed later is made later. */
export const MAX_ENROLLMENT_TTL_S = 24 * 3600;
/** How many tokens a listing shows (the newest): tokens live a day at most. */
export const ENROLLMENT_TOKEN_LIST_LIMIT = 100;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

@Injectable()
export class ClustersService {
  private readonly listeners: ClusterChangeListener[] = [];

  constructor(
    @Inject(ClustersRepository) private readonly repo: ClustersRepository,
    @Inject(ClusterEvents) private readonly events: ClusterEvents,
    @Inject(ProjectsService) private readonly projects: ProjectsService,
  ) {}

  /**
   * Who must hear of registrations and relabels. Delivery subscribes (MembershipService), so
   * clusters/ depends on no feature that depends on it; the change is applied before the
   * request answers, as when clusters called delivery directly.
   */
  onClusterChanged(listener: ClusterChangeListener): void {
    this.listeners.push(listener);
  }

  private async changed(clusterId: string): Promise<void> {
    for (const listener of this.listeners) await listener(clusterId);
  }

  /** Every cluster (or those of `ids`) with its labels; in `tx` when given (membership reads them under its lock). */
  labels(tx: Tx | undefined, ids?: string[]): Promise<ClusterLabels[]> {
    return this.repo.labels(tx, ids);
  }

  /** What the clusters should hold changed: each moves to a new desired generation (returned), in `tx` when given. */
  bumpDesiredGeneration(tx: Tx | undefined, clusterIds: string[]): Promise<Map<string, string>> {
    if (clusterIds.length === 0) return Promise.resolve(new Map<string, string>());
    return this.repo.bumpDesiredGeneration(tx, clusterIds);
  }

  /** A build for the clusters failed: shown as `DeliveryFailed` until the next build succeeds. */
  setDeliveryError(clusterIds: string[], error: string): Promise<void> {
    return this.repo.setDeliveryError(clusterIds, error);
  }

  async get(name: string): Promise<ClusterEntity> {
    const c = dns1123LabelProblem(name) ? null : await this.repo.findByName(name);
    if (!c) throw new ClustersError(ClustersErrorCode.ClusterNotFound, `cluster ${JSON.stringify(name)} not found`);
    return c;
  }

  /** One cluster as `actor` may see it: a cluster outside its scope is "not found", like one that does not exist. */
  async getVisible(actor: Actor, name: string): Promise<ClusterEntity> {
    const c = await this.get(name);
    const scope = await this.scope(actor);
    if (scope !== 'all' && !scope.some((s) => matches(s, c.labels)))
      throw new ClustersError(ClustersErrorCode.ClusterNotFound, `cluster ${JSON.stringify(name)} not found`);
    return c;
  }

  /** The clusters `actor` may see, by name, after `after`. */
  async list(actor: Actor, after: string | undefined, limit: number, labels?: Record<string, string>): Promise<Page<ClusterEntity>> {
    const scope = await this.scope(actor);
    if (scope === 'all') return toPage(await this.repo.list(after, limit + 1, labels), limit, (c) => c.name);
    // Selectors are matched here, with the very function publish uses, so what a token sees is
    // exactly what its projects may publish to. Read in batches until the page is full.
    const items: ClusterEntity[] = [];
    if (scope.length === 0) return toPage(items, limit, (c) => c.name);
    for (let cursor = after; items.length <= limit;) {
      const batch = await this.repo.list(cursor, SCOPE_BATCH, labels);
      items.push(...batch.filter((c) => scope.some((s) => matches(s, c.labels))));
      if (batch.length < SCOPE_BATCH) break;
      cursor = batch.at(-1)!.name;
    }
    return toPage(items.slice(0, limit + 1), limit, (c) => c.name);
  }

  /**
   * Which clusters `actor` may see. Admins: all. A project-scoped token: those its project may
   * publish to (its cluster selector; none while it has none). Any other token may act on every
   * project, so it sees the clusters some project may publish to, and never one that no project
   * may use.
   */
  private async scope(actor: Actor): Promise<'all' | LabelSelector[]> {
    if (actor.role === 'admin') return 'all';
    const selectors = [...(await this.projects.clusterSelectors(undefined, actor.projectId ?? undefined)).values()];
    return selectors.filter((s): s is LabelSelector => s !== null);
  }

  async register(name: string, labels: Record<string, string>, kubernetesIdentity?: KubernetesIdentity): Promise<ClusterEntity> {
    let cluster: ClusterEntity;
    try {
      cluster = await this.repo.insert({ name, labels, kubernetesIdentity: kubernetesIdentity ?? null });
    } catch (err) {
      if (isUniqueViolation(err))
        throw new ClustersError(ClustersErrorCode.ClusterExists, `cluster ${JSON.stringify(name)} already exists`);
      throw err;
    }
    // It joins the placements whose selectors match (if it died right here, the periodic membership pass would).
    await this.changed(cluster.id);
    return cluster;
  }

  /** New labels move the cluster into or out of selector-based publications. */
  async relabel(name: string, labels: Record<string, string>, expectedVersion: number | undefined): Promise<ClusterEntity> {
    const c = await this.update(name, expectedVersion, (c) => (c.labels = labels));
    await this.changed(c.id);
    return c;
  }

  /** Disabling cuts the agent off at once: every replica closes its streams and refuses its certificate; enabling lets it back. */
  async setEnabled(name: string, enabled: boolean, expectedVersion: number | undefined): Promise<ClusterEntity> {
    const c = await this.update(
      name,
      expectedVersion,
      (c) => (c.state = enabled ? (c.enrolledAt ? 'enrolled' : 'registered') : 'disabled'),
    );
    await this.events.publish({ type: 'access-changed', clusterId: c.id });
    return c;
  }

  /** Sets (or with null, removes) how the cluster's agent may enroll by service-account identity. */
  async setKubernetesIdentity(
    name: string,
    identity: KubernetesIdentity | null,
    expectedVersion: number | undefined,
  ): Promise<ClusterEntity> {
    return this.update(name, expectedVersion, (c) => (c.kubernetesIdentity = identity));
  }

  private async update(name: string, expectedVersion: number | undefined, mutate: (c: ClusterEntity) => void): Promise<ClusterEntity> {
    const updated = dns1123LabelProblem(name)
      ? null
      : await this.repo.updateLocked(name, (c) => {
          checkVersion(expectedVersion, c.version);
          mutate(c);
        });
    if (!updated) throw new ClustersError(ClustersErrorCode.ClusterNotFound, `cluster ${JSON.stringify(name)} not found`);
    return updated;
  }

  async delete(name: string, expectedVersion: number | undefined): Promise<void> {
    const c = await this.get(name);
    checkVersion(expectedVersion, c.version);
    await this.repo.delete(c.id);
    await this.events.publish({ type: 'access-changed', clusterId: c.id });
  }

  /** A one-time bootstrap token for the cluster's agent: returned once, stored as SHA-256. */
  async createEnrollmentToken(
    actor: Actor,
    name: string,
    ttlSeconds = DEFAULT_ENROLLMENT_TTL_S,
  ): Promise<{ id: string; token: string; expiresAt: Date; cluster: string }> {
    const c = await this.get(name);
    if (c.state === 'disabled')
      throw new ClustersError(ClustersErrorCode.ClusterDisabled, `cluster ${JSON.stringify(name)} is disabled; enable it first`);
    const token = `sge_${randomBytes(32).toString('base64url')}`;
    const expiresAt = new Date(Date.now() + Math.min(ttlSeconds, MAX_ENROLLMENT_TTL_S) * 1000);
    const row = await this.repo.insertEnrollmentToken({ clusterId: c.id, tokenHash: hashToken(token), expiresAt, createdBy: actor.name });
    return { id: row.id, token, expiresAt, cluster: c.name };
  }

  /** The cluster's enrollment tokens, newest first: metadata only (never the token or its hash). */
  async listEnrollmentTokens(name: string): Promise<EnrollmentTokenEntity[]> {
    const c = await this.get(name);
    return this.repo.enrollmentTokens(c.id, ENROLLMENT_TOKEN_LIST_LIMIT);
  }

  /** Revokes a token: it is deleted, so an Enroll with it fails like one with an unknown token. */
  async revokeEnrollmentToken(name: string, id: string): Promise<void> {
    const c = await this.get(name);
    if (!UUID.test(id) || !(await this.repo.deleteEnrollmentToken(c.id, id))) {
      throw new ClustersError(
        ClustersErrorCode.EnrollmentTokenNotFound,
        `enrollment token ${JSON.stringify(id.slice(0, 64))} of cluster ${JSON.stringify(name)} not found`,
      );
    }
  }
}
