import { Inject, Injectable } from '@nestjs/common';
import type { Actor } from '../auth/policy.js';
import { AppsService } from '../apps/apps.service.js';
import { DeliveryError, DeliveryErrorCode } from '../delivery/delivery.errors.js';
import { ProjectsService } from '../projects/projects.service.js';
import { matches, selectorKey, type LabelSelector } from '../common/label-selector.js';
import { PublicationStatusRepository, type AppClusterStatusRow } from './publication-status.repository.js';
import { MembershipService, type Placement } from '../delivery/membership.service.js';
import { PublicationWaiters, SAFETY_RECHECK_MS } from './publication-waiters.js';
import { ClusterEvents } from '../events/cluster-events.js';
import type { ClusterDeliveryView, DeliveryState, PublicationSummary, PublicationView } from './publications.dto.js';

const MAX_WAIT_S = 300;

/** Publish / unpublish an app, and where its delivery stands on each cluster. */
@Injectable()
export class PublicationsService {
  constructor(
    @Inject(AppsService) private readonly apps: AppsService,
    @Inject(ProjectsService) private readonly projects: ProjectsService,
    @Inject(PublicationStatusRepository) private readonly statuses: PublicationStatusRepository,
    @Inject(MembershipService) private readonly membership: MembershipService,
    @Inject(PublicationWaiters) private readonly waiters: PublicationWaiters,
    @Inject(ClusterEvents) private readonly events: ClusterEvents,
  ) {}

  /** Adds clusters (by name) and/or a selector to where the app is published. */
  async publish(
    actor: Actor,
    project: string,
    app: string,
    req: { clusters?: string[]; selector?: LabelSelector },
  ): Promise<PublicationView> {
    if (!req.clusters?.length && !req.selector)
      throw new DeliveryError(DeliveryErrorCode.TargetRequired, 'give clusters, a selector, or both');
    const r = await this.apps.resolve(actor, project, app);
    const moved = await this.membership.transaction(async (tx) => {
      const clusters = await this.membership.clusters(tx);
      const known = new Map(clusters.map((c) => [c.name, c]));
      const unknown = (req.clusters ?? []).filter((n) => !known.has(n));
      if (unknown.length)
        throw new DeliveryError(DeliveryErrorCode.ClusterNotFound, `unknown clusters: ${unknown.slice(0, 20).join(', ')}`);
      const allowed = (await this.projects.clusterSelectors(tx)).get(r.project.id) ?? null;
      if (allowed === null) {
        throw new DeliveryError(
          DeliveryErrorCode.NoClustersAllowed,
          `project ${r.project.name} may not publish to any cluster yet; an admin sets its cluster selector`,
        );
      }
      const current = (await this.membership.placement(tx, r.app.id)) ?? { appId: r.app.id, clusters: [], selectors: [], excluded: [] };
      const names = new Set(req.clusters ?? []);
      const next: Omit<Placement, 'updatedAt'> = {
        appId: r.app.id,
        clusters: [...new Set([...current.clusters, ...names])].sort(),
        selectors:
          req.selector && !current.selectors.some((s) => selectorKey(s) === selectorKey(req.selector!))
            ? [...current.selectors, req.selector]
            : current.selectors,
        excluded: current.excluded.filter((n) => !names.has(n)),
      };
      const refused = [...names].filter((n) => !matches(allowed, known.get(n)!.labels));
      if (refused.length) {
        throw new DeliveryError(
          DeliveryErrorCode.ClusterNotAllowed,
          `project ${r.project.name} may not publish to: ${refused.slice(0, 20).join(', ')}`,
        );
      }
      return this.membership.applyPlacement(tx, r.app.id, r.project.id, next, { clusters, projectSelector: allowed });
    });
    await this.membership.enqueue(moved);
    await this.events.publish({ type: 'placement-changed', appId: r.app.id });
    return this.view(actor, project, app);
  }

  /** Unpublishes from the named clusters (they stay excluded even if a selector matches), or from all. */
  async unpublish(actor: Actor, project: string, app: string, req: { clusters?: string[] }): Promise<PublicationView> {
    const r = await this.apps.resolve(actor, project, app);
    const moved = await this.membership.transaction(async (tx) => {
      const current = (await this.membership.placement(tx, r.app.id)) ?? { appId: r.app.id, clusters: [], selectors: [], excluded: [] };
      const names = req.clusters ? new Set(req.clusters) : undefined;
      const next: Omit<Placement, 'updatedAt'> = names
        ? {
            appId: r.app.id,
            clusters: current.clusters.filter((n) => !names.has(n)),
            selectors: current.selectors,
            excluded: current.selectors.length ? [...new Set([...current.excluded, ...names])].sort() : current.excluded,
          }
        : { appId: r.app.id, clusters: [], selectors: [], excluded: [] };
      return this.membership.applyPlacement(tx, r.app.id, r.project.id, next);
    });
    await this.membership.enqueue(moved);
    await this.events.publish({ type: 'placement-changed', appId: r.app.id });
    return this.view(actor, project, app);
  }

  /**
   * The publication and, per cluster, where delivery stands; with `waitSeconds`, once converged
   * or when time is up. Waiting re-reads only when an event concerns the app or one of its
   * clusters (see PublicationWaiters), holds one of the token's waiting slots, and ends early
   * when `signal` aborts (the client went away).
   */
  async view(actor: Actor, project: string, app: string, waitSeconds = 0, signal?: AbortSignal): Promise<PublicationView> {
    const r = await this.apps.resolve(actor, project, app);
    const until = Date.now() + Math.min(Math.max(waitSeconds, 0), MAX_WAIT_S) * 1000;
    let release: (() => void) | undefined;
    try {
      for (;;) {
        const [placement, rows] = await Promise.all([this.membership.placement(undefined, r.app.id), this.statuses.appStatus(r.app.id)]);
        const deliveries = rows.map(toDelivery);
        const summary = summarise(deliveries);
        const left = until - Date.now();
        if (summary.converged || left <= 0 || signal?.aborted) {
          return {
            project: r.project.name,
            app: r.app.name,
            clusters: placement?.clusters ?? [],
            selectors: placement?.selectors ?? [],
            excluded: placement?.excluded ?? [],
            summary,
            deliveries,
          };
        }
        release ??= this.waiters.admit(actor.tokenId);
        const clusterIds = rows.map((row) => row.clusterId);
        await this.waiters.changed(r.app.id, clusterIds, Math.min(left, SAFETY_RECHECK_MS), signal);
      }
    } finally {
      release?.();
    }
  }

  /** Admin: which clusters the project may publish to (null: none). Placements are re-applied at once. */
  async setProjectSelector(actor: Actor, project: string, selector: LabelSelector | null): Promise<void> {
    const p = await this.projects.resolve(actor, project);
    const moved = await this.membership.transaction(async (tx) => {
      await this.projects.setClusterSelector(tx, p.id, selector);
      return this.membership.projectSelectorChanged(tx, p.id);
    });
    await this.membership.enqueue(moved);
  }
}

function toDelivery(r: AppClusterStatusRow): ClusterDeliveryView {
  const reached = BigInt(r.appliedGeneration) >= BigInt(r.generation);
  let state: DeliveryState;
  let reason: string | null = null;
  // A cluster that never enrolled never received anything: there is nothing to remove.
  if (!r.published) state = reached || r.clusterState === 'registered' ? 'deprovisioned' : 'deprovisioning';
  else if (r.leasesMissing > 0) {
    // A dynamic secret this cluster has no credential of: not delivered, whatever the agent applied.
    state = r.leaseFailure ? 'failed' : 'pending';
    reason = r.leaseFailure;
  } else if (reached && r.failedSecrets > 0) {
    state = 'failed';
    reason = r.failure;
  } else if (reached) state = 'provisioned';
  else if (r.deliveryError) {
    state = 'failed';
    reason = `DeliveryFailed: ${r.deliveryError}`;
  } else state = 'pending';
  return { cluster: r.cluster, state, desiredGeneration: r.generation, appliedGeneration: r.appliedGeneration, reason, since: r.changedAt };
}

function summarise(ds: ClusterDeliveryView[]): PublicationSummary {
  const count = (s: DeliveryState) => ds.filter((d) => d.state === s).length;
  const s = {
    clusters: ds.filter((d) => d.state !== 'deprovisioned').length,
    pending: count('pending'),
    provisioned: count('provisioned'),
    failed: count('failed'),
    deprovisioning: count('deprovisioning'),
    deprovisioned: count('deprovisioned'),
  };
  return { ...s, converged: s.pending === 0 && s.deprovisioning === 0 };
}
