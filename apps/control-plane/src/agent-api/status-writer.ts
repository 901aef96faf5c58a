import type { AgentReport, ReportedStatus, SnapshotRepository } from './snapshot.repository.js';

/** How long a report waits for others to share its statement, at most. */
export const FLUSH_DELAY_MS = 15;
/** Reports (clusters) per statement at most; a full batch flushes at once. */
export const FLUSH_CLUSTERS = 2_000;
/** Statuses held for one cluster while writes fail, at most; beyond it its stream is ended (the agent resends on reconnect). */
export const MAX_PENDING_STATUSES = 10_000;
const RETRY_MAX_MS = 5_000;

interface Pending {
  generation: bigint | null;
  /** Whether `generation` was acknowledged as applied (an ack of a state this stream sent), not only reported at. */
  acked: boolean;
  agentVersion: string | null;
  /** By namespace/name: the latest status of each target wins. */
  statuses: Map<string, ReportedStatus>;
}

/**
 * Group commit of agents' reports: Applied acknowledgements, statuses and hellos from many
 * streams within FLUSH_DELAY_MS are written in ONE statement (SnapshotRepository.writeReports),
 * followed by ONE `status` event naming every cluster written. Reports of one cluster merge
 * (latest generation, latest status per target), so a cluster is at most one row of a batch.
 *
 * A failed write is kept and retried (backoff up to 5 s) until it succeeds — an acknowledged
 * state is never forgotten while this process lives; the agent is not asked to resend. Newer
 * reports of the same clusters merge into the kept ones, so what is kept is bounded by the
 * number of clusters (and MAX_PENDING_STATUSES per cluster: `add` refuses beyond it and the
 * stream is ended, so its agent reconnects and reports again).
 */
export class StatusWriter {
  private pending = new Map<string, Pending>();
  private timer: NodeJS.Timeout | undefined;
  private writing = false;
  private retryMs = 0;
  /** Statements issued, for tests and metrics. */
  statements = 0;

  constructor(
    private readonly repo: SnapshotRepository,
    private readonly written: (clusterIds: string[]) => void,
    private readonly failed: (err: unknown) => void,
  ) {}

  /** Queues a report; false when the cluster already has too many statuses waiting. */
  add(clusterId: string, generation: bigint | null, agentVersion: string | null, statuses: ReportedStatus[], acked = false): boolean {
    let p = this.pending.get(clusterId);
    if (!p) this.pending.set(clusterId, (p = { generation: null, acked: false, agentVersion: null, statuses: new Map() }));
    if (p.statuses.size + statuses.length > MAX_PENDING_STATUSES) return false;
    // Never backwards: a stale stream of the same cluster (an old agent pod) may report an older one.
    if (generation !== null && (p.generation === null || generation >= p.generation)) {
      p.acked = generation === p.generation ? p.acked || acked : acked;
      p.generation = generation;
    }
    if (agentVersion !== null) p.agentVersion = agentVersion;
    for (const s of statuses) p.statuses.set(`${s.namespace}/${s.name}`, s);
    this.schedule();
    return true;
  }

  private schedule(): void {
    if (this.writing || this.timer) return;
    const delay = this.pending.size >= FLUSH_CLUSTERS ? 0 : Math.max(FLUSH_DELAY_MS, this.retryMs);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, delay);
  }

  /** Writes what is pending now (tests and shutdown call it directly). */
  async flush(): Promise<void> {
    if (this.writing || this.pending.size === 0) return;
    this.writing = true;
    const batch = new Map<string, Pending>();
    for (const [id, p] of this.pending) {
      batch.set(id, p);
      this.pending.delete(id);
      if (batch.size >= FLUSH_CLUSTERS) break;
    }
    const reports: AgentReport[] = [...batch].map(([clusterId, p]) => ({
      clusterId,
      generation: p.generation,
      acked: p.acked,
      agentVersion: p.agentVersion,
      statuses: [...p.statuses.values()],
    }));
    try {
      this.statements++;
      await this.repo.writeReports(reports);
      this.retryMs = 0;
      const withStatus = reports.filter((r) => r.generation !== null).map((r) => r.clusterId);
      if (withStatus.length > 0) this.written(withStatus);
    } catch (err) {
      this.failed(err);
      // Keep it: merged under anything newer that arrived meanwhile.
      for (const [id, old] of batch) {
        const now = this.pending.get(id);
        if (!now) this.pending.set(id, old);
        else {
          if (old.generation !== null && (now.generation === null || old.generation > now.generation)) {
            now.generation = old.generation;
            now.acked = old.acked;
          } else if (old.generation !== null && old.generation === now.generation) now.acked ||= old.acked;
          now.agentVersion ??= old.agentVersion;
          for (const [k, s] of old.statuses) if (!now.statuses.has(k)) now.statuses.set(k, s);
        }
      }
      this.retryMs = Math.min(RETRY_MAX_MS, Math.max(100, this.retryMs * 2));
    } finally {
      this.writing = false;
      if (this.pending.size > 0) this.schedule();
    }
  }

  /** Writes everything pending, waiting out a write in progress (shutdown: no acknowledgement left behind). */
  async drain(timeoutMs = 5_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while ((this.writing || this.pending.size > 0) && Date.now() < until) {
      if (this.writing) await new Promise((r) => setTimeout(r, 10));
      else await this.flush();
    }
  }

  get size(): number {
    return this.pending.size;
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
