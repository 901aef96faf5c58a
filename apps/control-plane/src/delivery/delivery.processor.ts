import { OnWorkerEvent, Processor, WorkerHost } from '@nestjs/bullmq';
import { Inject } from '@nestjs/common';
import type { Job } from 'bullmq';
import { PinoLogger } from 'nestjs-pino';
import { ClusterEvents } from '../events/cluster-events.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { DeliveryBuilder } from './delivery-builder.js';
import { DeliveryRepository } from './delivery.repository.js';
import { DELIVERY_QUEUE, type DeliveryJob } from './delivery-queue.js';

/**
 * Runs delivery jobs (role `worker`). A failure is retried with backoff and recorded on the
 * cluster. Jobs take well under a second, so a short lock lets another replica take over the
 * jobs of one that died (SIGKILL, OOM) within about 10 s instead of BullMQ's default 30-60 s.
 */
@Processor(DELIVERY_QUEUE, { concurrency: 16, lockDuration: 10_000, stalledInterval: 5_000, maxStalledCount: 10 })
export class DeliveryProcessor extends WorkerHost {
  constructor(
    @Inject(DeliveryBuilder) private readonly builder: DeliveryBuilder,
    @Inject(DeliveryRepository) private readonly repo: DeliveryRepository,
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

  async process(job: Job<DeliveryJob>): Promise<void> {
    try {
      await this.builder.build(job.data.clusterId);
    } catch (err) {
      this.metrics.deliveryFailures.inc();
      const message = err instanceof Error ? err.message : String(err);
      // Message and code only: a driver error would carry the query's parameters.
      const code = (err as { code?: unknown }).code;
      this.logger.warn({ err: { message, code }, clusterId: job.data.clusterId, attempt: job.attemptsMade + 1 }, 'delivery job failed');
      await this.repo.setDeliveryError(job.data.clusterId, message).catch(() => undefined);
      await this.events.publish({ type: 'status', clusterIds: [job.data.clusterId] }); // waiters see the failure
      throw err;
    }
  }
}
