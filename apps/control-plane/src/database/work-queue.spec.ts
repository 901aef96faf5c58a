import { describe, expect, it } from '@jest/globals';
import { DependencyError } from '../common/dependency.errors.js';
import { WorkQueue } from './work-queue.js';

const gate = () => {
  let open!: () => void;
  const p = new Promise<void>((r) => (open = r));
  return { p, open };
};

describe('WorkQueue', () => {
  it('runs at most `concurrency` jobs, the rest in arrival order', async () => {
    const q = new WorkQueue({ name: 'test', concurrency: 2, maxWaiting: 10, maxWaitMs: 5_000 });
    const started: number[] = [];
    const gates = Array.from({ length: 5 }, gate);
    const jobs = gates.map((g, i) =>
      q.run(async () => {
        started.push(i);
        await g.p;
        return i;
      }),
    );
    await new Promise((r) => setImmediate(r));
    expect(started).toEqual([0, 1]);
    expect(q.stats).toEqual({ running: 2, waiting: 3 });
    gates[1]!.open();
    await jobs[1];
    await new Promise((r) => setImmediate(r));
    expect(started).toEqual([0, 1, 2]);
    for (const g of gates) g.open();
    expect(await Promise.all(jobs)).toEqual([0, 1, 2, 3, 4]);
    expect(q.stats).toEqual({ running: 0, waiting: 0 });
  });

  it('refuses at once beyond maxWaiting, and after maxWaitMs in the queue, with a window to retry in', async () => {
    const q = new WorkQueue({ name: 'test', concurrency: 1, maxWaiting: 1, maxWaitMs: 50 });
    const g = gate();
    const running = q.run(() => g.p);
    const waiting = q.run(() => Promise.resolve('late'));
    const refused = await q.run(() => Promise.resolve('never')).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(DependencyError);
    expect(refused).toMatchObject({ kind: 'unavailable', code: 'busy' });
    expect((refused as DependencyError).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(await waiting.catch((e: unknown) => e)).toMatchObject({ code: 'busy' }); // waited 50 ms: refused
    g.open();
    await running;
    expect(await q.run(() => Promise.resolve('next'))).toBe('next'); // the slot was handed back
    expect(q.stats).toEqual({ running: 0, waiting: 0 });
  });

  it('a failing job frees its slot', async () => {
    const q = new WorkQueue({ name: 'test', concurrency: 1, maxWaiting: 1, maxWaitMs: 1_000 });
    await expect(q.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await q.run(() => Promise.resolve(1))).toBe(1);
  });
});
