import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { MetricsService } from '../metrics/metrics.service.js';
import { GrantsRepository, type GrantRow } from './grants.repository.js';

/** One grant as an agent reported it, checked (agent-api/agent-grants.ts): names valid, `count` ≥ 1. */
export interface ReportedGrant {
  secretId: string;
  version: number;
  namespace: string;
  serviceAccount: string;
  pod: string;
  count: number;
  lastAt: Date;
}

/** How long a grant waits for others to share its statement, at most. */
export const GRANT_FLUSH_DELAY_MS = 50;
/** Rows per statement at most; a full batch flushes at once. */
export const GRANT_FLUSH_ROWS = 5_000;
/** Rows held while writes fail, at most; grants beyond it are dropped (and counted): they are a view, not an acknowledgement. */
export const MAX_PENDING_GRANTS = 50_000;
const RETRY_MAX_MS = 5_000;

const keyOf = (clusterId: string, g: { secretId: string; namespace: string; serviceAccount: string }) =>
  `${clusterId}/${g.secretId}/${g.namespace}/${g.serviceAccount}`;

/** `b` folded into `a`: counts add up, the latest grant gives version and pod. */
function merge(a: GrantRow, b: GrantRow): void {
  a.grants += b.grants;
  if (b.lastAt >= a.lastAt) {
    a.version = b.version;
    a.lastPod = b.lastPod;
    a.lastAt = b.lastAt;
  }
  if (b.firstAt < a.firstAt) a.firstAt = b.firstAt;
}

/**
 * Group commit of agents' Grants, as StatusWriter does for statuses: grants of many streams
 * within GRANT_FLUSH_DELAY_MS merge by (cluster, secret, namespace, service account) and are
 * written in ONE statement (GrantsRepository.record). A failed write is kept, merged under what
 * arrives meanwhile, and retried with backoff; what is kept is bounded (MAX_PENDING_GRANTS).
 */
@Injectable()
export class GrantsService implements OnModuleDestroy {
  private pending = new Map<string, GrantRow>();
  private timer: NodeJS.Timeout | undefined;
  private writing = false;
  private retryMs = 0;
  /** Statements issued, for tests. */
  statements = 0;

  constructor(
    @Inject(GrantsRepository) private readonly repo: GrantsRepository,
    @Inject(MetricsService) private readonly metrics: MetricsService,
    @Inject(PinoLogger) private readonly logger: PinoLogger,
  ) {
    logger.setContext('injection-grants');
  }

  /** Queues a cluster's grants; returns how many were dropped because too many are waiting. */
  add(clusterId: string, grants: ReportedGrant[]): number {
    let dropped = 0;
    for (const g of grants) {
      const row: GrantRow = {
        clusterId,
        secretId: g.secretId,
        namespace: g.namespace,
        serviceAccount: g.serviceAccount,
        version: g.version,
        grants: g.count,
        lastPod: g.pod,
        firstAt: g.lastAt,
        lastAt: g.lastAt,
      };
      const key = keyOf(clusterId, g);
      const held = this.pending.get(key);
      if (held) merge(held, row);
      else if (this.pending.size >= MAX_PENDING_GRANTS) dropped++;
      else this.pending.set(key, row);
    }
    if (dropped > 0) this.metrics.injectionGrants.inc({ outcome: 'dropped' }, dropped);
    this.schedule();
    return dropped;
  }

  private schedule(): void {
    if (this.writing || this.timer || this.pending.size === 0) return;
    const delay = this.pending.size >= GRANT_FLUSH_ROWS ? 0 : Math.max(GRANT_FLUSH_DELAY_MS, this.retryMs);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, delay);
  }

  /** Writes what is pending now (tests and shutdown call it directly). */
  async flush(): Promise<void> {
    if (this.writing || this.pending.size === 0) return;
    this.writing = true;
    const batch = new Map<string, GrantRow>();
    for (const [k, g] of this.pending) {
      batch.set(k, g);
      this.pending.delete(k);
      if (batch.size >= GRANT_FLUSH_ROWS) break;
    }
    try {
      this.statements++;
      const kept = await this.repo.record([...batch.values()]);
      this.retryMs = 0;
      this.metrics.injectionGrants.inc({ outcome: 'recorded' }, kept);
      // A secret not delivered to the reporting cluster (or not an inject app's): kept nowhere.
      if (batch.size > kept) this.metrics.injectionGrants.inc({ outcome: 'ignored' }, batch.size - kept);
    } catch (err) {
      this.logger.warn({ err }, 'could not record injection grants; retrying');
      for (const [k, old] of batch) {
        const now = this.pending.get(k);
        if (now) merge(now, old);
        else if (this.pending.size < MAX_PENDING_GRANTS) this.pending.set(k, old);
        else this.metrics.injectionGrants.inc({ outcome: 'dropped' });
      }
      this.retryMs = Math.min(RETRY_MAX_MS, Math.max(100, this.retryMs * 2));
    } finally {
      this.writing = false;
      this.schedule();
    }
  }

  /** Writes everything pending, waiting out a write in progress. */
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

  async onModuleDestroy(): Promise<void> {
    await this.drain().catch(() => undefined);
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
