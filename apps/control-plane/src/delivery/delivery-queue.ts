import { createHash } from 'node:crypto';
import { InjectQueue } from '@nestjs/bullmq';
import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import type { JobsOptions, Queue } from 'bullmq';
import { PinoLogger } from 'nestjs-pino';
import { RuntimeConfig } from '../config/runtime-config.js';
import { SnapshotBuildRepository } from './snapshot-build.repository.js';

export const DELIVERY_QUEUE = 'delivery';

/** A job names a batch of clusters to bring up to date; never anything secret. */
export interface DeliveryJob {
  clusterIds: string[];
}

/**
 * Clusters per job. A batch costs about six statements and one HSM call whatever its size, so
 * larger is cheaper for PostgreSQL; smaller lets the SQL of one batch overlap the HSM work of
 * another and bounds what a failing batch holds up. Measured in tests/integration/batched-build.
 */
export const BATCH_CLUSTERS = 250;
/**
 * At most one flush per this long: enqueues that arrive meanwhile (enrollments come one at a
 * time, hundreds a second) gather into the next one. A change after a quiet spell is flushed at
 * once, so a single rotation waits for nothing.
 */
const COALESCE_MS = 20;
/**
 * While flushes follow each other without a pause and each gathers several callers (concurrent
 * changes, not one caller after another), the window doubles up to this, so a storm of
 * single-cluster enqueues becomes few large jobs. At 20 ms, 3,000 agents enrolling at ~100/s made
 * 1,592 build jobs of two clusters each, six statements apiece: as many statements as the
 * enrollments themselves. A pause of two windows, or a flush with one caller, brings it back to
 * COALESCE_MS: a pipeline making one change after another never waits longer than before.
 */
const MAX_COALESCE_MS = 250;
/** How often the reconciler looks for clusters whose snapshot is behind, and how many per pass. */
const RECONCILE_INTERVAL_MS = 5_000;
const RECONCILE_LIMIT = 10_000;

const JOB_OPTS: JobsOptions = {
  attempts: 8,
  backoff: { type: 'exponential', delay: 500 },
  removeOnComplete: true,
  removeOnFail: true,
};

/**
 * Batch delivery jobs on one BullMQ queue. Enqueues that arrive within a few milliseconds are
 * gathered and cut, in cluster-id order, into jobs of up to BATCH_CLUSTERS clusters. A job's id
 * is derived from its clusters and their generations, so the same change enqueued from the
 * request, another replica or the reconciler makes one job as long as it is cut the same way;
 * a duplicate that slips through costs one statement (its clusters are built already). Jobs are
 * hints: the reconciler re-reads PostgreSQL for clusters whose built generation is behind and
 * enqueues them again, so a flushed Redis, a killed worker or a lost enqueue only delays delivery.
 */
@Injectable()
export class DeliveryQueue implements OnApplicationBootstrap, OnApplicationShutdown {
  private reconciler: NodeJS.Timeout | undefined;
  private reconciling = false;
  /** What the previous reconcile pass saw behind (cluster → desired generation). */
  private seenBehind = new Map<string, string>();
  private pending = new Map<string, string>();
  private flushTimer: NodeJS.Timeout | undefined;
  private lastFlushAt = 0;
  /** The current coalescing window (COALESCE_MS … MAX_COALESCE_MS). */
  private windowMs = COALESCE_MS;
  /** Enqueue calls gathered since the last flush. */
  private callers = 0;
  private flushed: { promise: Promise<void>; resolve: () => void } | undefined;

  constructor(
    @InjectQueue(DELIVERY_QUEUE) private readonly queue: Queue<DeliveryJob>,
    @Inject(SnapshotBuildRepository) private readonly repo: SnapshotBuildRepository,
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

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.reconciler);
    await this.flush();
  }

  /**
   * Enqueues builds for these clusters at (at least) these generations; resolves once they are
   * in the queue. Failures are logged: the reconciler retries.
   */
  enqueue(generations: Map<string, string>): Promise<void> {
    if (generations.size === 0) return Promise.resolve();
    this.callers++;
    for (const [id, g] of generations) {
      const had = this.pending.get(id);
      if (had === undefined || BigInt(had) < BigInt(g)) this.pending.set(id, g);
    }
    if (!this.flushed) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.flushed = { promise, resolve };
    }
    const { promise } = this.flushed;
    if (this.pending.size >= BATCH_CLUSTERS) void this.flush();
    else this.flushTimer ??= setTimeout(() => void this.flush(), Math.max(0, this.lastFlushAt + this.windowMs - Date.now()));
    return promise;
  }

  /** Clusters a build left behind or a failed batch split off: new jobs, after `delayMs`. */
  async enqueueAgain(clusterIds: string[], delayMs: number): Promise<void> {
    const jobs = batches([...clusterIds].sort()).map((ids) => ({
      name: 'build',
      data: { clusterIds: ids },
      opts: { ...JOB_OPTS, delay: delayMs },
    }));
    await this.add(jobs, clusterIds.length);
  }

  private async flush(): Promise<void> {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const now = Date.now();
    // Back to back and gathering several callers (a burst): the next window is longer; else short again.
    const burst = this.callers > 1 && now - this.lastFlushAt < 2 * this.windowMs;
    this.windowMs = burst ? Math.min(MAX_COALESCE_MS, this.windowMs * 2) : COALESCE_MS;
    this.callers = 0;
    this.lastFlushAt = now;
    const pending = this.pending;
    const done = this.flushed;
    this.pending = new Map();
    this.flushed = undefined;
    if (pending.size > 0) {
      const ids = [...pending.keys()].sort();
      const jobs = batches(ids).map((batch) => ({
        name: 'build',
        data: { clusterIds: batch },
        opts: { ...JOB_OPTS, jobId: jobId(batch, pending) },
      }));
      await this.add(jobs, pending.size);
    }
    done?.resolve();
  }

  private async add(jobs: Array<{ name: string; data: DeliveryJob; opts: JobsOptions }>, clusters: number): Promise<void> {
    try {
      for (let i = 0; i < jobs.length; i += 100) await this.queue.addBulk(jobs.slice(i, i + 100));
    } catch (err) {
      this.logger.warn({ err, clusters }, 'could not enqueue delivery jobs; the reconciler will');
    }
  }

  /**
   * Re-enqueues clusters whose snapshot is behind. When the queue is idle, all of them at once
   * (after a FLUSHALL or a lost enqueue nothing else will). While jobs are queued or running
   * (a large publish), only those seen behind at the same generation on the previous pass too:
   * the rest are most likely in a job already, and enqueueing them again would build twice.
   */
  async reconcile(): Promise<number> {
    if (this.reconciling) return 0;
    this.reconciling = true;
    try {
      const behind = new Map((await this.repo.behind(RECONCILE_LIMIT)).map((b) => [b.id, b.g]));
      const due = (await this.idle()) ? behind : new Map([...behind].filter(([id, g]) => this.seenBehind.get(id) === g));
      this.seenBehind = behind;
      await this.enqueue(due);
      return due.size;
    } catch (err) {
      this.logger.warn({ err }, 'reconcile pass failed; trying again shortly');
      return 0;
    } finally {
      this.reconciling = false;
    }
  }

  /** No job waiting, delayed or running, as far as Redis can tell (unreachable counts as busy). */
  private async idle(): Promise<boolean> {
    try {
      const counts = await this.queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'waiting-children');
      return Object.values(counts).every((n) => n === 0);
    } catch {
      return false;
    }
  }
}

function batches(ids: string[]): string[][] {
  const out: string[][] = [];
  for (let i = 0; i < ids.length; i += BATCH_CLUSTERS) out.push(ids.slice(i, i + BATCH_CLUSTERS));
  return out;
}

/** `<cluster>.<generation>` for a batch of one (as before batching); otherwise a digest of the batch's clusters and generations. */
function jobId(batch: string[], generations: Map<string, string>): string {
  if (batch.length === 1) return `${batch[0]}.${generations.get(batch[0]!)}`;
  const h = createHash('sha256');
  for (const id of batch) h.update(`${id}.${generations.get(id)};`);
  return `b.${h.digest('hex').slice(0, 32)}`;
}
