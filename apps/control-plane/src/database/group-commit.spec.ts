import { describe, expect, it } from '@jest/globals';
import { DependencyError, DependencyErrorCode } from '../common/dependency.errors.js';
import { GroupCommit, type Settled } from './group-commit.js';

const opened = () => {
  let open!: () => void;
  const p = new Promise<void>((r) => (open = r));
  return { p, open };
};
const tick = () => new Promise((r) => setImmediate(r));

/** A commit that records its batches and answers each item with its double, or its refusal if the item is negative. */
function recorder(hold?: Promise<void>) {
  const batches: number[][] = [];
  const commit = async (items: number[]): Promise<Array<Settled<number>>> => {
    batches.push(items);
    await hold;
    return items.map((i) => (i < 0 ? { ok: false, error: new Error(`refused ${i}`) } : { ok: true, value: i * 2 }));
  };
  return { batches, commit };
}

const options = { name: 'test', maxBatch: 4, concurrency: 1, maxWaiting: 100, maxWaitMs: 5_000, key: (i: number) => String(Math.abs(i)) };

describe('GroupCommit', () => {
  it('commits an item alone when idle, and gathers what arrives meanwhile into batches of at most maxBatch', async () => {
    const first = opened();
    const r = recorder(first.p);
    const g = new GroupCommit({ ...options, commit: r.commit });
    const results = [1, 2, 3, 4, 5, 6, 7].map((i) => g.submit(i));
    await tick();
    expect(r.batches).toEqual([[1]]);
    expect(g.stats).toEqual({ running: 1, waiting: 6 });
    first.open();
    expect(await Promise.all(results)).toEqual([2, 4, 6, 8, 10, 12, 14]);
    expect(r.batches).toEqual([[1], [2, 3, 4, 5], [6, 7]]);
    expect(g.stats).toEqual({ running: 0, waiting: 0 });
  });

  it('never puts two items with the same key in one batch: the later waits for the next', async () => {
    const first = opened();
    const r = recorder(first.p);
    const g = new GroupCommit({ ...options, commit: r.commit });
    const results = [9, 1, 2, 1, 3].map((i) => g.submit(i));
    await tick();
    first.open();
    await Promise.all(results);
    expect(r.batches).toEqual([[9], [1, 2, 3], [1]]);
  });

  it('never commits two items with the same key at once, even with batches running side by side', async () => {
    const hold = opened();
    const r = recorder(hold.p);
    const g = new GroupCommit({ ...options, concurrency: 2, commit: r.commit });
    const results = [1, 1, 2].map((i) => g.submit(i));
    await tick();
    // The second 1 waits for the first's batch; 2 may run beside it.
    expect(r.batches).toEqual([[1], [2]]);
    hold.open();
    await Promise.all(results);
    expect(r.batches).toEqual([[1], [2], [1]]);
  });

  it('answers each item with its own result or refusal', async () => {
    const first = opened();
    const r = recorder(first.p);
    const g = new GroupCommit({ ...options, commit: r.commit });
    const results = [1, 2, -3, 4].map((i) => g.submit(i).catch((e: Error) => e.message));
    await tick();
    first.open();
    expect(await Promise.all(results)).toEqual([2, 4, 'refused -3', 8]);
    expect(r.batches).toEqual([[1], [2, -3, 4]]);
  });

  it('commits each item alone again when a batch transaction fails, so a fault fails only its own item', async () => {
    const first = opened();
    const batches: number[][] = [];
    const g = new GroupCommit({
      ...options,
      commit: async (items: number[]) => {
        batches.push(items);
        await first.p;
        if (items.includes(13)) throw new Error('deadlock detected'); // a driver error, no item's own refusal
        return items.map((i) => ({ ok: true as const, value: i }));
      },
    });
    const results = [1, 2, 13, 4].map((i) => g.submit(i).catch((e: Error) => e.message));
    await tick();
    first.open();
    expect(await Promise.all(results)).toEqual([1, 2, 'deadlock detected', 4]);
    expect(batches).toEqual([[1], [2, 13, 4], [2], [13], [4]]);
  });

  it('gives every item a SigilError the batch failed with (busy, say), without committing them again', async () => {
    const batches: number[][] = [];
    const busy = new DependencyError(DependencyErrorCode.Busy, 'busy', { retryAfterSeconds: 1 });
    const g = new GroupCommit({
      ...options,
      concurrency: 1,
      commit: (items: number[]) => {
        batches.push(items);
        return Promise.reject(busy);
      },
    });
    const results = await Promise.all([1, 2, 3].map((i) => g.submit(i).catch((e: unknown) => e)));
    expect(results).toEqual([busy, busy, busy]);
    expect(batches).toEqual([[1], [2, 3]]);
  });

  it('refuses at once beyond maxWaiting, and after maxWaitMs waiting, as busy with a window to retry in', async () => {
    const first = opened();
    const r = recorder(first.p);
    const g = new GroupCommit({ ...options, maxWaiting: 1, maxWaitMs: 50, commit: r.commit });
    const running = g.submit(1);
    await tick();
    const waiting = g.submit(2).catch((e: unknown) => e);
    const refused = await g.submit(3).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(DependencyError);
    expect((refused as DependencyError).code).toBe('busy');
    expect((refused as DependencyError).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    const late = await waiting;
    expect(late).toBeInstanceOf(DependencyError);
    first.open();
    expect(await running).toBe(2);
    expect(r.batches).toEqual([[1]]); // the one that waited too long was never committed
  });
});
