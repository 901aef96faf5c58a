import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { ClustersService, type ClusterLabels } from '../clusters/clusters.service.js';
import { matches, type LabelSelector } from '../common/label-selector.js';
import { RuntimeConfig } from '../config/runtime-config.js';
import { UnitOfWork, type Tx } from '../database/transaction.js';
import { ProjectsService } from '../projects/projects.service.js';
import { DeliveryQueue } from './delivery-queue.js';
import { PlacementRepository, type Placement } from './placement.repository.js';

export type { ClusterLabels, Placement };

/** How often every placement is re-applied from scratch, whatever events were missed. */
const MEMBERSHIP_PASS_MS = 60_000;

/** The clusters a placement reaches: named or selected, not excluded, and allowed for the project. */
export function placementTargets(
  placement: Pick<Placement, 'clusters' | 'selectors' | 'excluded'>,
  projectSelector: LabelSelector | null,
  clusters: ClusterLabels[],
): Set<string> {
  if (projectSelector === null) return new Set();
  const named = new Set(placement.clusters);
  const excluded = new Set(placement.excluded);
  return new Set(
    clusters
      .filter(
        (c) =>
          !excluded.has(c.name) &&
          matches(projectSelector, c.labels) &&
          (named.has(c.name) || placement.selectors.some((s) => matches(s, c.labels))),
      )
      .map((c) => c.id),
  );
}

/**
 * Who gets what. Membership (cluster_apps) is recomputed whenever its inputs change — a
 * placement, a cluster's labels, a project's allowed clusters — under one lock, in the same
 * transaction as the change; every cluster whose set changed moves to a new generation and gets
 * a delivery job once the transaction has committed.
 */
@Injectable()
export class MembershipService implements OnModuleInit, OnApplicationBootstrap, OnApplicationShutdown {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    @Inject(PlacementRepository) private readonly repo: PlacementRepository,
    @Inject(UnitOfWork) private readonly uow: UnitOfWork,
    @Inject(ProjectsService) private readonly projects: ProjectsService,
    @Inject(ClustersService) private readonly clusterRegistry: ClustersService,
    @Inject(DeliveryQueue) private readonly queue: DeliveryQueue,
    @Inject(RuntimeConfig) private readonly config: RuntimeConfig,
    @Inject(PinoLogger) private readonly logger: PinoLogger,
  ) {
    logger.setContext('membership');
  }

  onModuleInit(): void {
    this.clusterRegistry.onClusterChanged((clusterId) => this.clusterChanged(clusterId));
  }

  onApplicationBootstrap(): void {
    if (!this.config.roles.includes('worker')) return;
    const pass = () => {
      this.reconcileAll().catch((err: unknown) => this.logger.warn({ err }, 'membership pass failed; trying again later'));
    };
    this.timer = setInterval(pass, MEMBERSHIP_PASS_MS).unref();
  }

  onApplicationShutdown(): void {
    clearInterval(this.timer);
  }

  /** A transaction holding the membership lock: what every change of who-gets-what runs in. */
  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.repo.membershipTransaction(fn);
  }

  /** Where app `appId` is published (named clusters, selectors, exclusions), if anywhere. */
  placement(tx: Tx | undefined, appId: string): Promise<Placement | undefined> {
    return this.repo.placement(tx, appId);
  }

  /** Every cluster with its labels, as membership sees them in `tx` (outside one: now, for a preview). */
  clusters(tx: Tx | undefined): Promise<ClusterLabels[]> {
    return this.clusterRegistry.labels(tx);
  }

  /** Applies `placement` to app `appId` of `projectId`; returns the clusters that moved. */
  async applyPlacement(
    tx: Tx,
    appId: string,
    projectId: string,
    placement: Omit<Placement, 'updatedAt'>,
    /** What the caller already read in this transaction (every cluster, the project's selector). */
    read?: { clusters: ClusterLabels[]; projectSelector: LabelSelector | null },
  ): Promise<Map<string, string>> {
    await this.repo.savePlacement(tx, placement);
    const projectSelector = read ? read.projectSelector : ((await this.projects.clusterSelectors(tx)).get(projectId) ?? null);
    const clusters = read?.clusters ?? (await this.clusterRegistry.labels(tx));
    return this.reapply(tx, appId, placementTargets(placement, projectSelector, clusters));
  }

  /**
   * Publishes (or unpublishes) `appId` on `clusterIds`: each cluster's desired generation grows,
   * and the app's entry records that generation. Returns the clusters with their new generation.
   */
  private async setPublished(tx: Tx, appId: string, clusterIds: string[], published: boolean): Promise<Map<string, string>> {
    if (clusterIds.length === 0) return new Map();
    const bumped = await this.clusterRegistry.bumpDesiredGeneration(tx, clusterIds);
    await this.repo.recordMembership(tx, appId, bumped, published);
    return bumped;
  }

  /** Makes the app's membership exactly `targets`; returns the clusters that moved, with their generation. */
  private async reapply(tx: Tx, appId: string, targets: Set<string>): Promise<Map<string, string>> {
    const current = await this.repo.publishedClusters(tx, appId);
    const add = [...targets].filter((id) => !current.has(id));
    const remove = [...current].filter((id) => !targets.has(id));
    const moved = await this.setPublished(tx, appId, add, true);
    for (const [id, g] of await this.setPublished(tx, appId, remove, false)) moved.set(id, g);
    return moved;
  }

  /** A cluster was registered or relabelled: it joins or leaves placements accordingly. */
  async clusterChanged(clusterId: string): Promise<void> {
    const moved = await this.repo.membershipTransaction(async (tx) => {
      const [cluster] = await this.clusterRegistry.labels(tx, [clusterId]);
      if (!cluster) return new Map<string, string>();
      const selectors = await this.projects.clusterSelectors(tx);
      const current = await this.repo.publishedApps(tx, clusterId);
      const moved = new Map<string, string>();
      for (const p of await this.repo.placementsOfProject(tx, undefined)) {
        const wanted = placementTargets(p, selectors.get(p.projectId) ?? null, [cluster]).has(clusterId);
        if (wanted !== current.has(p.appId)) {
          for (const [id, g] of await this.setPublished(tx, p.appId, [clusterId], wanted)) moved.set(id, g);
        }
      }
      return moved;
    });
    await this.queue.enqueue(moved);
  }

  /** Re-applies every placement (a safety net run periodically: membership then matches labels, whatever happened). */
  async reconcileAll(): Promise<number> {
    const moved = await this.repo.membershipTransaction(async (tx) => {
      const selectors = await this.projects.clusterSelectors(tx);
      const clusters = await this.clusterRegistry.labels(tx);
      const moved = new Map<string, string>();
      for (const p of await this.repo.placementsOfProject(tx, undefined)) {
        for (const [id, g] of await this.reapply(tx, p.appId, placementTargets(p, selectors.get(p.projectId) ?? null, clusters)))
          moved.set(id, g);
      }
      return moved;
    });
    await this.queue.enqueue(moved);
    return moved.size;
  }

  /** An admin changed which clusters a project may target: every placement of it is re-applied. */
  async projectSelectorChanged(tx: Tx, projectId: string): Promise<Map<string, string>> {
    const moved = new Map<string, string>();
    const read = {
      clusters: await this.clusterRegistry.labels(tx),
      projectSelector: (await this.projects.clusterSelectors(tx)).get(projectId) ?? null,
    };
    for (const p of await this.repo.placementsOfProject(tx, projectId)) {
      for (const [id, g] of await this.applyPlacement(tx, p.appId, projectId, p, read)) moved.set(id, g);
    }
    return moved;
  }

  /**
   * Runs `work` (which changes app `appId`: its values, its secrets, or the app itself) in a
   * transaction that also moves every cluster holding the app to a new generation; enqueues
   * their builds after it commits. Snapshot rows whose value stayed but whose delivery did not
   * (the app moved namespace or delivery mode, a secret was renamed or retyped) are marked
   * changed, so the build gives them the new generation and deltas carry them in full.
   * `relocated` marks every row of the app whatever the comparison finds.
   */
  async appContentChange<T>(appId: string, work: (tx: Tx) => Promise<T>, opts: { relocated?: boolean } = {}): Promise<T> {
    const { result, moved } = await this.uow.run(async (tx) => {
      const before = await this.repo.deliveryShape(tx, appId);
      const result = await work(tx);
      await this.repo.lockMembership(tx);
      const after = await this.repo.deliveryShape(tx, appId);
      // Clusters first, then their snapshot rows: the order builds lock them in (no deadlock).
      const moved = await this.setPublished(tx, appId, [...(await this.repo.publishedClusters(tx, appId))], true);
      if (before && after) {
        if (opts.relocated || before.app !== after.app) await this.repo.markSnapshotRowsChanged(tx, appId);
        else {
          const changed = [...after.secrets].filter(([id, shape]) => before.secrets.has(id) && before.secrets.get(id) !== shape);
          await this.repo.markSnapshotRowsChanged(
            tx,
            appId,
            changed.map(([id]) => id),
          );
        }
      }
      return { result, moved };
    });
    await this.queue.enqueue(moved);
    return result;
  }

  /**
   * Dynamic secrets: new credentials became active for these (app, cluster) pairs, in `tx`. The
   * clusters move to a new generation and the apps' entries record it (publication status waits
   * for the agents to apply it); the caller enqueues the returned builds once `tx` committed.
   */
  async leasesActivated(tx: Tx, pairs: Array<{ appId: string; clusterId: string }>): Promise<Map<string, string>> {
    const moved = await this.clusterRegistry.bumpDesiredGeneration(tx, [...new Set(pairs.map((p) => p.clusterId))].sort());
    await this.repo.recordGenerations(
      tx,
      pairs.filter((p) => moved.has(p.clusterId)).map((p) => ({ ...p, generation: moved.get(p.clusterId)! })),
    );
    return moved;
  }

  /** These clusters must be rebuilt, in `tx` (a credential they hold was revoked); enqueue the result after commit. */
  rebuildIn(tx: Tx, clusterIds: string[]): Promise<Map<string, string>> {
    return this.clusterRegistry.bumpDesiredGeneration(tx, [...new Set(clusterIds)].sort());
  }

  /** The cluster must be rebuilt (a new delivery key after enrollment). */
  async rebuild(clusterId: string): Promise<void> {
    await this.queue.enqueue(await this.clusterRegistry.bumpDesiredGeneration(undefined, [clusterId]));
  }

  enqueue(moved: Map<string, string>): Promise<void> {
    return this.queue.enqueue(moved);
  }
}
