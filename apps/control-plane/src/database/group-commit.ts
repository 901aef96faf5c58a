import { SigilError } from '../common/sigil-error.js';
import { busyError } from './work-queue.js';

/** One item's outcome in a committed batch: its own result, or its own refusal. */
export type Settled<R> = { ok: true; value: R } | { ok: false; error: unknown };

export interface GroupCommitOptions<I, R> {
  /** For the refusal's message: what kind of work waits here. */
  name: string;
  /** Items per batch at most. */
  maxBatch: number;
  /** Batches committing at once. */
  concurrency: number;
  /** Items allowed to wait; one more is refused at once. */
  maxWaiting: number;
  /** How long an item may wait for its batch before it is refused. */
  maxWaitMs: number;
  /**
   * Items with the same key are never committed at once, in one batch or two: the later waits
   * until the earlier's batch is done, so its transaction sees what the earlier committed (a
   * retry racing its first attempt, say; a statement that waited for a row lock would still
   * read the other tables as they were before).
   */
  key: (item: I) => string;
  /**
   * Commits a batch in one transaction; answers every item, in order. A throw fails the whole
   * transaction: a SigilError (busy, no root key) is every item's answer; anything else (a
   * deadlock, a driver or HSM error) and each item is committed again alone, so one item's
   * fault fails only that item.
   */
  commit: (items: I[]) => Promise<Array<Settled<R>>>;
}

interface Waiting<I, R> {
  item: I;
  resolve: (r: R) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout;
}

/**
 * Group commit for requests that each need a short transaction: they wait here, bounded in
 * number and time, and are committed together, so a storm of them costs PostgreSQL a few
 * statements per batch instead of a few per request (its cost is per statement, not per row).
 * Idle, a request is committed at once, alone: batches grow only while others are committing.
 * Beyond the bounds the caller gets a DependencyError `busy` with a retry window, as at the
 * WorkQueue gate.
 */
export class GroupCommit<I, R> {
  private waiting: Array<Waiting<I, R>> = [];
  private running = 0;
  /** Keys of the items in batches being committed. */
  private readonly inFlight = new Set<string>();
  /** Mean batch duration (ms), for the retry window of a refusal. */
  private meanMs = 20;

  constructor(private readonly options: GroupCommitOptions<I, R>) {
    if (options.maxBatch < 1 || options.concurrency < 1 || options.maxWaiting < 0)
      throw new Error(`group commit ${options.name}: invalid bounds`);
  }

  get stats(): { running: number; waiting: number } {
    return { running: this.running, waiting: this.waiting.length };
  }

  submit(item: I): Promise<R> {
    if (this.waiting.length >= this.options.maxWaiting) return Promise.reject(this.busy());
    return new Promise<R>((resolve, reject) => {
      const entry: Waiting<I, R> = {
        item,
        resolve,
        reject,
        timer: setTimeout(() => {
          const i = this.waiting.indexOf(entry);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(this.busy());
        }, this.options.maxWaitMs),
      };
      this.waiting.push(entry);
      this.pump();
    });
  }

  private pump(): void {
    while (this.running < this.options.concurrency && this.waiting.length > 0) {
      const { batch, keys } = this.take();
      if (batch.length === 0) return; // every waiting item's key is being committed: the batch that ends pumps again
      this.running += 1;
      const at = performance.now();
      void this.execute(batch).finally(() => {
        this.meanMs += (performance.now() - at - this.meanMs) / 16;
        for (const k of keys) this.inFlight.delete(k);
        this.running -= 1;
        this.pump();
      });
    }
  }

  /** The oldest waiting items, up to maxBatch, one per key and none whose key is in flight. */
  private take(): { batch: Array<Waiting<I, R>>; keys: Set<string> } {
    const keys = new Set<string>();
    const batch: Array<Waiting<I, R>> = [];
    const rest: Array<Waiting<I, R>> = [];
    for (const w of this.waiting) {
      const key = this.options.key(w.item);
      if (batch.length < this.options.maxBatch && !keys.has(key) && !this.inFlight.has(key)) {
        keys.add(key);
        this.inFlight.add(key);
        clearTimeout(w.timer);
        batch.push(w);
      } else rest.push(w);
    }
    this.waiting = rest;
    return { batch, keys };
  }

  private async execute(batch: Array<Waiting<I, R>>): Promise<void> {
    let settled: Array<Settled<R>>;
    try {
      settled = await this.options.commit(batch.map((w) => w.item));
    } catch (err) {
      if (batch.length === 1 || err instanceof SigilError) {
        for (const w of batch) w.reject(err);
        return;
      }
      // One transaction for all failed: each alone now, so a fault is only its own item's.
      for (const w of batch) await this.execute([w]);
      return;
    }
    batch.forEach((w, i) => {
      const s = settled[i];
      if (!s) w.reject(new Error(`group commit ${this.options.name}: no answer for an item`));
      else if (s.ok) w.resolve(s.value);
      else w.reject(s.error);
    });
  }

  private busy(): SigilError {
    const batches = Math.ceil(this.waiting.length / this.options.maxBatch) + this.running;
    return busyError(this.options.name, (batches * this.meanMs) / this.options.concurrency);
  }
}
