import { DESIRED_SECRET_OVERHEAD_BYTES, DESIRED_STATE_PAGE_BYTES } from '@sigil/agent-protocol';
import type { ClusterState, SnapshotRepository } from './snapshot.repository.js';
import type { ByteBudget } from './byte-budget.js';

/** A stream's request: the cluster and the base of the delta it can take (0: complete). */
export interface StateRequest {
  clusterId: string;
  base: bigint;
  /** The generation the agent holds: if it is still the built one, nothing is read. */
  unless: bigint | undefined;
  /** The stream's first read after its Hello: `unless` must also be what the centre recorded as applied. */
  hello?: boolean;
  /** Called with what PostgreSQL holds, and the bytes reserved for it (the caller releases them). */
  served(state: ClusterState, reserved: number): void;
  failed(err: unknown): void;
}

/** Bodies of one batched read at most: a few tens of MiB, whatever the number of clusters. */
export const READ_BUDGET_BYTES = 32 * 1024 * 1024;
/** Clusters per statement at most (the statement's parameter arrays and result stay modest). */
export const READ_BATCH_CLUSTERS = 2_000;
/** Statements in flight at once: the database pool is shared with builds and enrollment. */
const CONCURRENT_READS = 2;

/**
 * DataLoader-style batching of state reads: every stream that needs a state in the same
 * event-loop turn (one `desired` event for 500 clusters, a sweep, a reconnect wave) is served
 * by ONE statement (SnapshotRepository.states). Reads reserve their byte budget first; a
 * cluster the read had no budget left for is asked again in the next one.
 */
export class SnapshotLoader {
  private queue: StateRequest[] = [];
  private scheduled = false;
  private running = 0;
  /** Statements issued, for tests and metrics. */
  statements = 0;

  constructor(
    private readonly repo: SnapshotRepository,
    private readonly budget: ByteBudget,
  ) {}

  load(req: StateRequest): void {
    this.queue.push(req);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled || this.running >= CONCURRENT_READS || this.queue.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.read();
    });
  }

  private async read(): Promise<void> {
    if (this.running >= CONCURRENT_READS || this.queue.length === 0) return;
    // The slot first, so reads waiting for budget still count against CONCURRENT_READS.
    this.running++;
    // At least two parts' worth (a read always serves its first cluster in full, up to a
    // part), or wait for parts in flight to be written.
    const minimum = DESIRED_STATE_PAGE_BYTES * 2;
    const reserved =
      this.budget.available >= minimum
        ? this.budget.tryTake(READ_BUDGET_BYTES) || (await this.budget.take(minimum))
        : await this.budget.take(minimum);
    const batch = this.queue.splice(0, READ_BATCH_CLUSTERS);
    if (batch.length === 0) {
      this.budget.release(reserved);
      this.running--;
      return;
    }
    this.statements++;
    try {
      const states = await this.repo.states(
        batch.map((r) => ({ clusterId: r.clusterId, base: r.base, unless: r.unless, hello: r.hello })),
        DESIRED_STATE_PAGE_BYTES,
        reserved,
        DESIRED_SECRET_OVERHEAD_BYTES,
      );
      const byId = new Map(states.map((s) => [s.clusterId, s]));
      let left = reserved;
      const deferred: StateRequest[] = [];
      for (const r of batch) {
        const s = byId.get(r.clusterId);
        if (!s) {
          // The cluster is gone; its stream is closed by the access check.
          r.served({ clusterId: r.clusterId, kind: 'paged', generation: 0n }, 0);
        } else if (s.kind === 'deferred') deferred.push(r);
        else {
          const bytes = s.kind === 'full' ? Math.min(left, stateBytes(s)) : 0;
          left -= bytes;
          r.served(s, bytes);
        }
      }
      this.budget.release(left);
      this.queue.unshift(...deferred);
    } catch (err) {
      this.budget.release(reserved);
      for (const r of batch) r.failed(err);
    } finally {
      this.running--;
      this.schedule();
    }
  }
}

function stateBytes(s: Extract<ClusterState, { kind: 'full' }>): number {
  let n = s.keyEnvelopes.reduce((t, e) => t + e.length, 0);
  for (const r of s.rows) n += r.body ? r.body.ciphertext.length + DESIRED_SECRET_OVERHEAD_BYTES : 64;
  return n;
}
