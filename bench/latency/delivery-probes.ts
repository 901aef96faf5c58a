import { QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { DELIVERY_QUEUE } from '../../apps/control-plane/src/delivery/delivery-queue.js';
import { redisConnectionOptions } from '../../apps/control-plane/src/redis/redis.module.js';
import type { Probe } from './latency-report.js';

/**
 * Where a rotation's time goes, from probes that change nothing in the product: BullMQ's queue
 * events (the job added when the request commits, and picked up by a worker) and the Redis
 * `desired` cluster event (snapshot built, agent's stream pushed), received by this process.
 */
/** Listens to the delivery queue and the cluster events of one cluster; stamps the current rotation's milestones. */
export class DeliveryProbes {
  current: { t0: number; probe: Probe } | undefined;
  private constructor(
    private readonly sub: Redis,
    private readonly queueEvents: QueueEvents,
  ) {}

  static async open(redisUrl: string, prefix: string, clusterId: string): Promise<DeliveryProbes> {
    const sub = new Redis(redisUrl, { maxRetriesPerRequest: null, lazyConnect: true });
    sub.on('error', () => undefined);
    await sub.connect();
    await sub.subscribe(`${prefix}:cluster-events`);
    const queueEvents = new QueueEvents(DELIVERY_QUEUE, { connection: redisConnectionOptions(redisUrl), prefix });
    queueEvents.on('error', () => undefined);
    await queueEvents.waitUntilReady();
    const probes = new DeliveryProbes(sub, queueEvents);
    // This bench's control plane (own database and Redis prefix) has one cluster, so every job
    // of its delivery queue is that cluster's, whether jobs are per cluster or batches.
    const stamp = (field: keyof Probe) => {
      const c = probes.current;
      if (c && c.probe[field] === undefined) c.probe[field] = performance.now() - c.t0;
    };
    queueEvents.on('added', () => stamp('added'));
    queueEvents.on('active', () => stamp('active'));
    sub.on('message', (_channel: string, raw: string) => {
      const e = JSON.parse(raw) as { type?: string; clusterIds?: string[] };
      if (e.type === 'desired' && e.clusterIds?.includes(clusterId)) stamp('built');
    });
    return probes;
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.queueEvents.close(), this.sub.quit()]);
  }
}
