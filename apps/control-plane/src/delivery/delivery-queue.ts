import { InjectQueue } from '@nestjs/bullmq';
import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import type { Queue } from 'bullmq';
import { PinoLogger } from 'nestjs-pino';
import { RuntimeConfig } from '../config/runtime-config.js';
import { DeliveryRepository } from './delivery.repository.js';

export const DELIVERY_QUEUE = 'delivery';

/** A job names a cluster and the generation to build; never anything secret. */
export interface DeliveryJob {
  clusterId: string;
  generation: string;
}

/** How often the reconciler looks for clusters whose snapshot is behind, and how many per pass. */
const RECONCILE_INTERVAL_MS = 5_000;
const RECONCILE_BATCH = 5_000;

/**
 * Per-cluster delivery jobs on one BullMQ queue (not a queue per cluster). A job's id is
 * cluster + generation, so any number of enqueues of the same change — from the request, from
 * another replica, from the reconciler — make one job. Jobs are hints: the reconciler re-reads
 * PostgreSQL for every cluster whose built generation is behind its desired one and enqueues it
 * again, so a flushed Redis, a killed worker or a lost enqueue only delays delivery.
 */
@Injectable()
export class DeliveryQueue implements OnApplicationBootstrap, OnApplicationShutdown {
  private reconciler: NodeJS.Timeout | undefined;
  private reconciling = false;

  constructor(
    @InjectQueue(DELIVERY_QUEUE) private readonly queue: Queue<DeliveryJob>,
    @Inject(DeliveryRepository) private readonly repo: DeliveryRepository,
    @Inject(RuntimeConfig) private readonly config: RuntimeConfig,
    @Inject(PinoLogger) private readonly logger: PinoLogger,
  ) {
    logger.setContext('delivery-queue');
    this.queue.on('error', () => undefined); // Redis outages surface through /readyz; the reconciler catches up
  }

  onApplicationBootstrap(): void {
    if (!this.config.roles.includes('worker')) return;
    this.reconciler = setInterval(() => void this.reconcile(), RECONCILE_INTERVAL_MS).unref();
    void this.reconcile();
  }

  onApplicationShutdown(): void {
    clearInterval(this.reconciler);
  }

  /** Enqueues a build for each cluster at its generation. Failures are logged: the reconciler retries. */
  async enqueue(generations: Map<string, string>): Promise<void> {
    if (generations.size === 0) return;
    const jobs = [...generations].map(([clusterId, generation]) => ({
      name: 'build',
      data: { clusterId, generation },
      opts: {
        jobId: `${clusterId}.${generation}`,
        attempts: 8,
        backoff: { type: 'exponential', delay: 500 },
        removeOnComplete: true,
        removeOnFail: true,
      },
    }));
    try {
      for (let i = 0; i < jobs.length; i += 1_000) await this.queue.addBulk(jobs.slice(i, i + 1_000));
    } catch (err) {
      this.logger.warn({ err, clusters: generations.size }, 'could not enqueue delivery jobs; the reconciler will');
    }
  }

  /** Re-enqueues every cluster whose snapshot is behind (idempotent: job ids dedupe). */
  async reconcile(): Promise<number> {
    if (this.reconciling) return 0;
    this.reconciling = true;
    try {
      const behind = await this.repo.behind(RECONCILE_BATCH);
      await this.enqueue(new Map(behind.map((b) => [b.id, b.g])));
      return behind.length;
    } catch (err) {
      this.logger.warn({ err }, 'reconcile pass failed; trying again shortly');
      return 0;
    } finally {
      this.reconciling = false;
    }
  }
}
