import { Inject, Injectable } from '@nestjs/common';
import { ClusterEvents } from '../events/cluster-events.js';
import { HsmService } from '../hsm/hsm.service.js';
import { ClusterKeyRepository } from '../keys/cluster-key.repository.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { DeliveryRepository, type DesiredRow } from './delivery.repository.js';

/**
 * The delivery job: brings one cluster's snapshot up to its desired generation. Data keys are
 * wrapped for the cluster (HSM) only where no wrapped copy for its current delivery key exists,
 * so a re-delivery, a reconnect or a rebuild after a lost job costs no HSM work. The snapshot is
 * replaced under the cluster's row lock and only ever moves forward; then every replica hears
 * the new generation and pushes it to the cluster's stream.
 */
@Injectable()
export class DeliveryBuilder {
  constructor(
    @Inject(DeliveryRepository) private readonly repo: DeliveryRepository,
    @Inject(ClusterKeyRepository) private readonly clusterKeys: ClusterKeyRepository,
    @Inject(HsmService) private readonly hsm: HsmService,
    @Inject(ClusterEvents) private readonly events: ClusterEvents,
    @Inject(MetricsService) private readonly metrics: MetricsService,
  ) {}

  /** Returns the generation built, or undefined when there was nothing to do. */
  async build(clusterId: string): Promise<bigint | undefined> {
    for (let attempt = 0; attempt < 5; attempt++) {
      // Read before the rows: every change bumps desired_generation in its own transaction, so
      // if it is unchanged under the lock below, the rows read here are still the desired ones.
      const seen = await this.repo.generations(this.repo.manager, clusterId);
      if (!seen || seen.built >= seen.desired) return undefined; // a stale job: already built
      const key = await this.clusterKeys.active(clusterId);
      if (!key) return undefined; // not enrolled yet: enrollment triggers a build
      const wanted = await this.repo.desired(this.repo.manager, clusterId);
      await this.wrapMissing(clusterId, key, wanted);
      const built = await this.repo.transaction(async (em) => {
        const g = await this.repo.lockForBuild(em, clusterId);
        if (!g || g.built >= g.desired) return { done: true as const, generation: undefined };
        if (g.keyVersion !== key.version) return { done: false as const };
        let rows = wanted;
        if (g.desired !== seen.desired) {
          // Something changed meanwhile: read again under the lock; it may need keys not wrapped yet.
          rows = await this.repo.desired(em, clusterId);
          const have = await this.repo.wrappedFor(
            em,
            clusterId,
            key.version,
            rows.map((r) => r.sealedValueId),
          );
          if (rows.some((r) => !have.has(r.sealedValueId))) return { done: false as const };
        }
        await this.repo.saveSnapshot(em, clusterId, g.desired, key.version, rows);
        return { done: true as const, generation: g.desired };
      });
      if (built.done) {
        if (built.generation !== undefined) {
          this.metrics.deliveriesBuilt.inc();
          await this.events.publish({ type: 'desired', clusterIds: [clusterId] });
        }
        return built.generation;
      }
    }
    throw new Error('the desired state kept changing while building; retrying the job');
  }

  private async wrapMissing(
    clusterId: string,
    key: { version: number; rootKeyVersion: number; wrappedKey: Buffer },
    rows: DesiredRow[],
  ): Promise<void> {
    const have = await this.repo.wrappedFor(
      this.repo.manager,
      clusterId,
      key.version,
      rows.map((r) => r.sealedValueId),
    );
    const missing = rows.filter((r) => !have.has(r.sealedValueId));
    if (missing.length === 0) return;
    const [wrapped] = await this.hsm.wrapForClusters([
      {
        clusterKey: { rootKeyVersion: key.rootKeyVersion, wrapped: key.wrappedKey },
        deks: missing.map((r) => ({ rootKeyVersion: r.rootKeyVersion, wrapped: r.wrappedDek })),
      },
    ]);
    this.metrics.hsmWraps.inc(missing.length);
    await this.repo.saveWrapped(
      this.repo.manager,
      clusterId,
      key.version,
      missing.map((r) => r.sealedValueId),
      wrapped!,
    );
  }
}
