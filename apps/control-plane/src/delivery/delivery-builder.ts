import { Inject, Injectable } from '@nestjs/common';
import { ClusterEvents } from '../events/cluster-events.js';
import { HsmService } from '../hsm/hsm.service.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { UnitOfWork } from '../database/transaction.js';
import { SnapshotBuildRepository, type BuildTarget, type DesiredClusterRow } from './snapshot-build.repository.js';

/** How many times a batch looks again at clusters that moved or were locked meanwhile, before leaving them to a new job. */
const ROUNDS = 3;

export interface BatchOutcome {
  /** Clusters whose snapshot this build moved forward. */
  built: string[];
  /** Clusters still behind that this build could not finish (their state kept moving, or another transaction held them). */
  left: string[];
}

/**
 * The delivery job: brings a batch of clusters' snapshots up to their desired generation, at a
 * cost per batch rather than per cluster — one statement finds the clusters still behind with
 * their delivery key, one reads the desired rows of all of them, one HSM call wraps every data
 * key none of them has a wrapped copy of (so a re-delivery, a reconnect or a rebuild after a lost
 * job costs no HSM work), one statement saves those, and one transaction writes all snapshots.
 * Snapshots only move forward, under the clusters' row locks; then one event wakes the streams.
 */
@Injectable()
export class DeliveryBuilder {
  constructor(
    @Inject(SnapshotBuildRepository) private readonly repo: SnapshotBuildRepository,
    @Inject(UnitOfWork) private readonly uow: UnitOfWork,
    @Inject(HsmService) private readonly hsm: HsmService,
    @Inject(ClusterEvents) private readonly events: ClusterEvents,
    @Inject(MetricsService) private readonly metrics: MetricsService,
  ) {}

  async build(clusterIds: string[]): Promise<BatchOutcome> {
    const built: string[] = [];
    let pending = clusterIds;
    for (let round = 0; round < ROUNDS && pending.length > 0; round++) {
      if (round > 0) await new Promise((r) => setTimeout(r, 20 * round)); // let the transaction holding them commit
      const r = await this.round(pending);
      if (r.built.length > 0) {
        built.push(...r.built);
        this.metrics.deliveriesBuilt.inc(r.built.length);
        await this.events.publish({ type: 'desired', clusterIds: r.built });
      }
      pending = r.again;
    }
    return { built, left: pending };
  }

  private async round(clusterIds: string[]): Promise<{ built: string[]; again: string[] }> {
    // Read before the rows: every change bumps desired_generation in its own transaction, so a
    // cluster whose generation (and key) is unchanged under the lock below still wants these rows.
    const targets = await this.repo.behindWithKeys(undefined, clusterIds);
    if (targets.length === 0) return { built: [], again: [] }; // a duplicate job, or not enrolled yet (enrollment triggers a build)
    const rows = await this.repo.desiredFor(undefined, targets);
    await this.wrapMissing(targets, rows);
    return this.uow.run(async (tx) => {
      const locked = new Map(
        (
          await this.repo.lockBatch(
            tx,
            targets.map((t) => t.clusterId),
          )
        ).map((l) => [l.clusterId, l]),
      );
      const saves: Array<{ clusterId: string; generation: bigint; keyVersion: number }> = [];
      const again: string[] = [];
      for (const t of targets) {
        const l = locked.get(t.clusterId);
        if (!l)
          again.push(t.clusterId); // held by another builder or a change: look again
        else if (l.built >= l.desired)
          continue; // built meanwhile
        else if (l.desired !== t.desired || l.keyVersion !== t.keyVersion)
          again.push(t.clusterId); // moved: rows to read again
        else saves.push({ clusterId: t.clusterId, generation: t.desired, keyVersion: t.keyVersion });
      }
      const saving = new Set(saves.map((s) => s.clusterId));
      await this.repo.saveSnapshots(
        tx,
        saves,
        rows.filter((r) => saving.has(r.clusterId)),
      );
      return { built: saves.map((s) => s.clusterId), again };
    });
  }

  /** One HSM call for every data key of the batch that has no copy wrapped for its cluster yet (split over the HSM workers). */
  private async wrapMissing(targets: BuildTarget[], rows: DesiredClusterRow[]): Promise<void> {
    const missing = new Map<string, DesiredClusterRow[]>();
    for (const r of rows) {
      if (!r.wrappedDek) continue;
      const list = missing.get(r.clusterId);
      if (list) list.push(r);
      else missing.set(r.clusterId, [r]);
    }
    if (missing.size === 0) return;
    const keys = new Map(targets.map((t) => [t.clusterId, t]));
    const groups = [...missing];
    const wrapped = await this.hsm.wrapForClusters(
      groups.map(([clusterId, list]) => {
        const key = keys.get(clusterId)!;
        return {
          clusterKey: { rootKeyVersion: key.rootKeyVersion, wrapped: key.wrappedKey },
          deks: list.map((r) => ({ rootKeyVersion: r.rootKeyVersion, wrapped: r.wrappedDek! })),
        };
      }),
    );
    const saves = groups.flatMap(([clusterId, list], i) =>
      list.map((r, j) => ({
        clusterId,
        keyVersion: keys.get(clusterId)!.keyVersion,
        sealedValueId: r.sealedValueId,
        wrapped: wrapped[i]![j]!,
      })),
    );
    this.metrics.hsmWraps.inc(saves.length);
    await this.repo.saveWrappedMany(undefined, saves);
  }
}
