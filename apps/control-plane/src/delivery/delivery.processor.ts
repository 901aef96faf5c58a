import { OnWorkerEvent, Processor, WorkerHost } from '@nestjs/bullmq';
import { Inject } from '@nestjs/common';
import type { Job } from 'bullmq';
import { PinoLogger } from 'nestjs-pino';
import { ClustersService } from '../clusters/clusters.service.js';
import { ClusterEvents } from '../events/cluster-events.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { DeliveryBuilder } from './delivery-builder.js';
import { DELIVERY_QUEUE, DeliveryQueue, type DeliveryJob } from './delivery-queue.js';

/**
 * A batch that failed this many attempts (about 7 s of backoff: longer than a PostgreSQL or Redis
 * restart) is split in halves, so one bad cluster cannot hold up the others for long.
 */
const SPLIT_AFTER_ATTEMPTS = 4;
/** Clusters a build left behind (still changing, or held by another transaction) go to a new job after this. */
const AGAIN_DELAY_MS = 200;

/**
 * Runs batch delivery jobs (role `worker`). A failure is recorded on every cluster of the batch
 * and retried with backoff; a batch that keeps failing is split until the failing cluster is
 * alone. A few jobs run at once, so that one batch's SQL overlaps another's HSM work. Jobs take
 * about a second, so a short lock lets another replica take over the jobs of one that died
 * (SIGKILL, OOM) within about 10 s instead of BullMQ's default 30-60 s.
 */
@Processor(DELIVERY_QUEUE, { concurrency: 4, lockDuration: 10_000, stalledInterval: 5_000, maxStalledCount: 10 })
export class DeliveryProcessor extends WorkerHost {
  /** Clusters a job of this process is building now: another job of this process skips them (that job builds or re-enqueues them). */
  private readonly inFlight = new Set<string>();

  constructor(
    @Inject(DeliveryBuilder) private readonly builder: DeliveryBuilder,
    @Inject(ClustersService) private readonly clusters: ClustersService,
    @Inject(DeliveryQueue) private readonly queue: DeliveryQueue,
    @Inject(MetricsService) private readonly metrics: MetricsService,
    @Inject(PinoLogger) private readonly logger: PinoLogger,
    @Inject(ClusterEvents) private readonly events: ClusterEvents,
  ) {
    super();
    logger.setContext('delivery');
  }

  /**
   * Worker-level errors (Redis gone, a job's keys flushed under it) must not crash the process:
   * the job's effect is in PostgreSQL, and the reconciler re-enqueues what is still behind.
   */
  @OnWorkerEvent('error')
  onError(err: Error): void {
    this.logger.warn({ err: { message: err.message } }, 'delivery worker error; the reconciler catches up');
  }

  async process(job: Job<DeliveryJob | { clusterId: string }>): Promise<void> {
    const all = 'clusterIds' in job.data ? job.data.clusterIds : [job.data.clusterId]; // jobs queued before batching
    const ids = all.filter((id) => !this.inFlight.has(id));
    // Clusters another job here is building may have moved on since it read them: look again
    // shortly rather than leaving them to the reconciler (5-10 s).
    const busy = all.filter((id) => this.inFlight.has(id));
    if (busy.length > 0) await this.queue.enqueueAgain(busy, AGAIN_DELAY_MS);
    if (ids.length === 0) return;
    for (const id of ids) this.inFlight.add(id);
    try {
      const { left } = await this.builder.build(ids);
      if (left.length > 0) await this.queue.enqueueAgain(left, AGAIN_DELAY_MS);
    } catch (err) {
      this.metrics.deliveryFailures.inc();
      const message = err instanceof Error ? err.message : String(err);
      // Message and code only: a driver error would carry the query's parameters.
      const code = (err as { code?: unknown }).code;
      const attempt = job.attemptsMade + 1;
      this.logger.warn({ err: { message, code }, clusters: ids.length, first: ids[0], attempt }, 'delivery job failed');
      await this.clusters.setDeliveryError(ids, message).catch(() => undefined);
      await this.events.publish({ type: 'status', clusterIds: ids }); // waiters see the failure
      if (ids.length > 1 && attempt >= SPLIT_AFTER_ATTEMPTS) {
        const half = Math.ceil(ids.length / 2);
        const delay = 500 * 2 ** (attempt - 1);
        await this.queue.enqueueAgain(ids.slice(0, half), delay);
        await this.queue.enqueueAgain(ids.slice(half), delay);
        return;
      }
      throw err;
    } finally {
      for (const id of ids) this.inFlight.delete(id);
    }
  }
}
