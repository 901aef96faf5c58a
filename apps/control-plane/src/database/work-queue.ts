import { DependencyError, DependencyErrorCode } from '../common/dependency.errors.js';

export interface WorkQueueOptions {
  /** For the refusal's message and metrics: what kind of work waits here. */
  name: string;
  /** Jobs running at once; kept below the pool size so other work still finds a connection. */
  concurrency: number;
  /** Jobs allowed to wait; one more is refused at once. */
  maxWaiting: number;
  /** How long a job may wait for its turn before it is refused. */
  maxWaitMs: number;
}

/** The window a refused caller is told to retry in: at least a second, about as long as the queue takes to drain. */
const MIN_RETRY_AFTER_S = 1;
const MAX_RETRY_AFTER_S = 30;

/**
 * An admission gate in front of the database pool. Bursts (10,000 agents enrolling at once)
 * wait here, in order, with a bound on how many and for how long, instead of inside pg's pool,
 * whose acquire timeout fails them with "timeout exceeded when trying to connect" and leaves
 * every other caller of the pool starved. Beyond the bounds the caller gets a DependencyError `busy`
 * with a retry window (UNAVAILABLE `busy` with retry-after on gRPC, 503 with Retry-After on REST),
 * which agents retry.
 */
export class WorkQueue {
  private running = 0;
  private readonly waiting: Array<{ start: () => void; timer: NodeJS.Timeout }> = [];
  /** Mean job duration (ms), to tell refused callers how long the backlog takes. */
  private meanMs = 10;

  constructor(private readonly options: WorkQueueOptions) {
    if (options.concurrency < 1 || options.maxWaiting < 0) throw new Error(`work queue ${options.name}: invalid bounds`);
  }

  get stats(): { running: number; waiting: number } {
    return { running: this.running, waiting: this.waiting.length };
  }

  async run<T>(job: () => Promise<T>): Promise<T> {
    if (this.running >= this.options.concurrency) await this.turn();
    else this.running += 1;
    const at = performance.now();
    try {
      return await job();
    } finally {
      this.meanMs += (performance.now() - at - this.meanMs) / 32;
      this.release();
    }
  }

  /** Waits until a running job hands over its slot (the slot is counted for us by release()). */
  private turn(): Promise<void> {
    if (this.waiting.length >= this.options.maxWaiting) return Promise.reject(this.busy());
    return new Promise<void>((resolve, reject) => {
      const entry = {
        start: () => {
          clearTimeout(entry.timer);
          resolve();
        },
        timer: setTimeout(() => {
          const i = this.waiting.indexOf(entry);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(this.busy());
        }, this.options.maxWaitMs),
      };
      this.waiting.push(entry);
    });
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next)
      next.start(); // the slot passes straight on: `running` stays the same
    else this.running -= 1;
  }

  private busy(): DependencyError {
    return busyError(this.options.name, ((this.waiting.length + this.running) * this.meanMs) / this.options.concurrency);
  }
}

/** The refusal of a full or slow queue: `busy`, with a retry window about as long as the backlog takes to drain. */
export function busyError(name: string, drainMs: number): DependencyError {
  const retryAfter = Math.min(MAX_RETRY_AFTER_S, Math.max(MIN_RETRY_AFTER_S, Math.ceil(drainMs / 1000)));
  return new DependencyError(DependencyErrorCode.Busy, `the control plane is busy (${name}); retry shortly`, {
    retryAfterSeconds: retryAfter,
  });
}
