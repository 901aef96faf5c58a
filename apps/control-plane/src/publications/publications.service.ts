import { Inject, Injectable } from '@nestjs/common';
import type { Actor } from '../auth/policy.js';
import { AppsService } from '../apps/apps.service.js';
import { DeliveryError, DeliveryErrorCode } from '../delivery/delivery.errors.js';
import { ProjectsService } from '../projects/projects.service.js';
import { matches, selectorKey, type LabelSelector } from '../common/label-selector.js';
import { toPage, type Page } from '../common/http.js';
import {
  PublicationStatusRepository,
  type AppClusterStatusRow,
  type DeliveryFilter,
  type FleetStatusRow,
  type StateCounts,
} from './publication-status.repository.js';
import { MembershipService, placementTargets, type ClusterLabels, type Placement } from '../delivery/membership.service.js';
import { PublicationWaiters, SAFETY_RECHECK_MS } from './publication-waiters.js';
import { ClusterEvents } from '../events/cluster-events.js';
import type {
  ClusterDeliveryView,
  DeliveryPage,
  FleetDeliveryView,
  PlacementView,
  PublicationSummary,
  PublicationView,
  PublishPreview,
} from './publications.dto.js';

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
      const allowed = (await this.projects.clusterSelectors(tx)).get(r.project.id) ?? null;
      const current = await this.membership.placement(tx, r.app.id);
      const plan = planPublish(r.app.id, req, clusters, allowed, current);
      if (plan.unknown.length)
        throw new DeliveryError(DeliveryErrorCode.ClusterNotFound, `unknown clusters: ${plan.unknown.slice(0, 20).join(', ')}`);
      if (allowed === null) {
        throw new DeliveryError(
          DeliveryErrorCode.NoClustersAllowed,
          `project ${r.project.name} may not publish to any cluster yet; an admin sets its cluster selector`,
        );
      }
      if (plan.refused.length) {
        throw new DeliveryError(
          DeliveryErrorCode.ClusterNotAllowed,
          `project ${r.project.name} may not publish to: ${plan.refused.slice(0, 20).join(', ')}`,
        );
      }
      return this.membership.applyPlacement(tx, r.app.id, r.project.id, plan.next, { clusters, projectSelector: allowed });
    });
    await this.membership.enqueue(moved);
    await this.events.publish({ type: 'placement-changed', appId: r.app.id });
    return this.view(actor, project, app);
  }

  /**
   * What `publish` with this request would do, without doing it: the same plan (planPublish)
   * on the same reads, outside the membership lock, writing nothing. Refusals publish would
   * answer with (unknown or not allowed clusters) are reported instead of thrown.
   */
  async preview(
    actor: Actor,
    project: string,
    app: string,
    req: { clusters?: string[]; selector?: LabelSelector },
  ): Promise<PublishPreview> {
    if (!req.clusters?.length && !req.selector)
      throw new DeliveryError(DeliveryErrorCode.TargetRequired, 'give clusters, a selector, or both');
    const r = await this.apps.resolve(actor, project, app);
    const [clusters, selectors, current] = await Promise.all([
      this.membership.clusters(undefined),
      this.projects.clusterSelectors(undefined, r.project.id),
      this.membership.placement(undefined, r.app.id),
    ]);
    const plan = planPublish(r.app.id, req, clusters, selectors.get(r.project.id) ?? null, current);
    const names = plan.reached.map((c) => c.name).sort();
    return { count: names.length, clusters: names.slice(0, PREVIEW_NAMES), unknown: plan.unknown, notAllowed: plan.notAllowed };
  }

  /**
   * One page of the clusters the app is published to (or being removed from), filtered and by
   * name, with the whole app's summary: two statements, whatever the fleet's size.
   */
  async deliveries(
    actor: Actor,
    project: string,
    app: string,
    filter: DeliveryFilter,
    after: string | undefined,
    limit: number,
  ): Promise<DeliveryPage> {
    const r = await this.apps.resolve(actor, project, app);
    const [rows, counts] = await Promise.all([
      this.statuses.fleetPage(r.app.id, filter, after, limit + 1),
      this.statuses.stateCounts(r.app.id),
    ]);
    const page: Page<FleetStatusRow> = toPage(rows, limit, (row) => row.cluster);
    return { items: page.items.map(toFleetDelivery), next: page.next, summary: summaryOf(counts) };
  }

  /** Where the app is published (names, selectors, exclusions) without the per-cluster rows: small at any fleet size. */
  async placement(actor: Actor, project: string, app: string): Promise<PlacementView> {
    const r = await this.apps.resolve(actor, project, app);
    const p = await this.membership.placement(undefined, r.app.id);
    return { clusters: p?.clusters ?? [], selectors: p?.selectors ?? [], excluded: p?.excluded ?? [], updatedAt: p?.updatedAt ?? null };
  }

  /** The current rows of those of `clusterIds` that app `appId` is (or was) published to. */
  async deliveriesOf(appId: string, clusterIds: string[]): Promise<FleetDeliveryView[]> {
    return (await this.statuses.fleetRows(appId, clusterIds)).map(toFleetDelivery);
  }

  /** The id of the app `actor` asks for (404 when it does not exist or is outside the actor's project). */
  async appId(actor: Actor, project: string, app: string): Promise<string> {
    return (await this.apps.resolve(actor, project, app)).app.id;
  }

  /** The app's summary alone. */
  async summaryOf(appId: string): Promise<PublicationSummary> {
    return summaryOf(await this.statuses.stateCounts(appId));
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
  return {
    cluster: r.cluster,
    state: r.state,
    desiredGeneration: r.generation,
    appliedGeneration: r.appliedGeneration,
    reason: r.reason,
    since: r.changedAt,
  };
}

function toFleetDelivery(r: FleetStatusRow): FleetDeliveryView {
  return {
    ...toDelivery(r),
    labels: r.labels,
    lastSeenAt: r.lastSeenAt,
    agentVersion: r.agentVersion,
    secrets: r.secrets.map((x) => ({ name: x.name, version: x.version, applied: x.applied })),
  };
}

function summaryOf(c: StateCounts): PublicationSummary {
  const clusters = c.pending + c.provisioned + c.failed + c.deprovisioning;
  return { clusters, ...c, converged: c.pending === 0 && c.deprovisioning === 0 };
}

function summarise(ds: ClusterDeliveryView[]): PublicationSummary {
  const counts: StateCounts = { pending: 0, provisioned: 0, failed: 0, deprovisioning: 0, deprovisioned: 0 };
  for (const d of ds) counts[d.state]++;
  return summaryOf(counts);
}

/** Names a publish preview lists at most. */
const PREVIEW_NAMES = 50;

/** What a publish request resolves to; publish and its preview both use it, so they cannot disagree. */
export interface PublishPlan {
  /** Named clusters that do not exist (publish: 404 cluster_not_found). */
  unknown: string[];
  /** Named clusters outside the project's cluster selector, all of them when it has none (publish: 403). */
  refused: string[];
  /** The placement after the publish. */
  next: Omit<Placement, 'updatedAt'>;
  /** The clusters the request reaches: named or matched, allowed for the project, not excluded after the publish. */
  reached: ClusterLabels[];
  /** Clusters the request names or matches that it does not reach (outside the project's selector, or still excluded). */
  notAllowed: number;
}

/** Resolves a publish request against every cluster, the project's cluster selector and the app's current placement. */
export function planPublish(
  appId: string,
  req: { clusters?: string[]; selector?: LabelSelector },
  clusters: ClusterLabels[],
  allowed: LabelSelector | null,
  current: Placement | undefined,
): PublishPlan {
  const known = new Map(clusters.map((c) => [c.name, c]));
  const names = new Set(req.clusters ?? []);
  const unknown = [...names].filter((n) => !known.has(n));
  const was = current ?? { clusters: [], selectors: [], excluded: [] };
  const next: Omit<Placement, 'updatedAt'> = {
    appId,
    clusters: [...new Set([...was.clusters, ...names])].sort(),
    selectors:
      req.selector && !was.selectors.some((s) => selectorKey(s) === selectorKey(req.selector!))
        ? [...was.selectors, req.selector]
        : was.selectors,
    excluded: was.excluded.filter((n) => !names.has(n)),
  };
  const refused = [...names].filter((n) => known.has(n) && (allowed === null || !matches(allowed, known.get(n)!.labels)));
  // What this request alone reaches, by the rule membership applies to the whole placement.
  const request = { clusters: [...names], selectors: req.selector ? [req.selector] : [], excluded: next.excluded };
  const targets = placementTargets(request, allowed, clusters);
  const matched = clusters.filter((c) => names.has(c.name) || (req.selector !== undefined && matches(req.selector, c.labels)));
  const reached = matched.filter((c) => targets.has(c.id));
  return { unknown, refused, next, reached, notAllowed: matched.length - reached.length };
}
