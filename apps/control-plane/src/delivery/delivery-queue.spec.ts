import 'reflect-metadata';
import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import type { Queue } from 'bullmq';
import type { PinoLogger } from 'nestjs-pino';
import type { RuntimeConfig } from '../config/runtime-config.js';
import { DeliveryQueue, type DeliveryJob } from './delivery-queue.js';
import type { SnapshotBuildRepository } from './snapshot-build.repository.js';

/** The jobs added, as the cluster ids of each flush (one addBulk call per flush here: < 100 jobs). */
function queue() {
  const flushes: Array<{ at: number; clusters: string[] }> = [];
  const fake = {
    on: () => undefined,
    addBulk: (jobs: Array<{ data: DeliveryJob }>) => {
      flushes.push({ at: Date.now(), clusters: jobs.flatMap((j) => j.data.clusterIds) });
      return Promise.resolve([]);
    },
  };
  const logger = { setContext: () => undefined, warn: () => undefined } as unknown as PinoLogger;
  const q = new DeliveryQueue(
    fake as unknown as Queue<DeliveryJob>,
    {} as SnapshotBuildRepository,
    { roles: [] } as unknown as RuntimeConfig,
    logger,
  );
  return { q, flushes };
}

describe('DeliveryQueue coalescing', () => {
  beforeEach(() => {
    jest.useFakeTimers({ now: 1_000_000 });
  });
  afterEach(() => {
    jest.useRealTimers();
  });

  it('flushes a change after a quiet spell at once', async () => {
    const { q, flushes } = queue();
    void q.enqueue(new Map([['c1', '1']]));
    await jest.advanceTimersByTimeAsync(0);
    expect(flushes).toEqual([{ at: 1_000_000, clusters: ['c1'] }]);
    // Well after it, another single change waits for nothing either.
    await jest.advanceTimersByTimeAsync(5_000);
    void q.enqueue(new Map([['c2', '1']]));
    await jest.advanceTimersByTimeAsync(0);
    expect(flushes.map((f) => f.at)).toEqual([1_000_000, 1_005_000]);
  });

  it('keeps the short window for one caller after another (a pipeline awaiting each change)', async () => {
    const { q, flushes } = queue();
    for (let i = 0; i < 50; i++) {
      const started = Date.now();
      const done = q.enqueue(new Map([[`c${i}`, '1']]));
      await jest.advanceTimersByTimeAsync(25);
      await done;
      expect(flushes.at(-1)!.at - started).toBeLessThanOrEqual(20);
    }
    expect(flushes).toHaveLength(50);
  });

  it('gathers a burst of single-cluster enqueues (an enrollment storm) into ever larger flushes, at most 250 ms apart', async () => {
    const { q, flushes } = queue();
    const done: Array<Promise<void>> = [];
    // 1,000 enrollments at 200/s, each enqueueing its own cluster, many in flight at once.
    for (let i = 0; i < 1_000; i++) {
      done.push(q.enqueue(new Map([[`c${String(i).padStart(4, '0')}`, '1']])));
      await jest.advanceTimersByTimeAsync(5);
    }
    await jest.advanceTimersByTimeAsync(300);
    await Promise.all(done);
    expect(flushes.flatMap((f) => f.clusters)).toHaveLength(1_000); // nothing lost, nothing twice
    expect(flushes.length).toBeLessThan(40); // with a fixed 20 ms window it was 250
    const gaps = flushes.slice(1).map((f, i) => f.at - flushes[i]!.at);
    expect(Math.max(...gaps)).toBeLessThanOrEqual(250);
    // After the storm, a pause of two windows: the next change is flushed at once again.
    await jest.advanceTimersByTimeAsync(600);
    const before = flushes.length;
    void q.enqueue(new Map([['late', '2']]));
    await jest.advanceTimersByTimeAsync(0);
    expect(flushes).toHaveLength(before + 1);
    expect(flushes.at(-1)!.clusters).toEqual(['late']);
    void q.enqueue(new Map([['later', '2']]));
    await jest.advanceTimersByTimeAsync(20);
    expect(flushes.at(-1)!.clusters).toEqual(['later']); // within the short window again
  });
});
