import { Inject, Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { Counter } from 'prom-client';
import { RuntimeConfig } from '../config/runtime-config.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { AuditService } from './audit.service.js';

/** What was attempted without valid credentials: bounded values only (route actions, statuses). */
export interface FailedAttempt {
  action: string;
  method: string;
  /** The route pattern or RPC name, never the raw path (it is attacker-chosen). */
  path: string;
  status: number;
  /** The client address. */
  source: string;
}

/** Sources counted exactly per kind and window; the least frequent is folded into "other" when full. */
export const TRACKED_SOURCES = 100;
/** Kinds per window (actions × status); more than this share one overflow kind. */
const MAX_KINDS = 64;
/** Sources named in the audit record (the most frequent). */
const NAMED_SOURCES = 20;

interface Tally {
  attempt: Omit<FailedAttempt, 'source'>;
  total: number;
  sources: Map<string, number>;
  /** attempts from sources no longer (or never) tracked individually */
  other: number;
  firstAt: Date;
}

/**
 * Unauthenticated failures (bad API tokens, refused enrollments) are evidence, but writing each
 * to the serialised audit chain would let a flood from many addresses stall every writer. They
 * are counted here instead — in memory bounded by MAX_KINDS × TRACKED_SOURCES — and written as
 * one audit record per kind and window, plus a Prometheus counter.
 */
@Injectable()
export class FailedAttempts implements OnModuleInit, OnApplicationShutdown {
  private tallies = new Map<string, Tally>();
  private timer: NodeJS.Timeout | undefined;
  private readonly counter: Counter<'action' | 'status'>;

  constructor(
    @Inject(AuditService) private readonly audit: AuditService,
    @Inject(RuntimeConfig) private readonly config: RuntimeConfig,
    @Inject(MetricsService) metrics: MetricsService,
    @Inject(PinoLogger) private readonly logger: PinoLogger,
  ) {
    logger.setContext('audit');
    this.counter = new Counter({
      name: 'sigil_auth_failed_attempts_total',
      help: 'Unauthenticated attempts (bad API token, refused enrollment) by attempted action and status',
      labelNames: ['action', 'status'] as const,
      registers: [metrics.registry],
    });
  }

  onModuleInit(): void {
    this.timer = setInterval(() => void this.flush(), this.config.audit.failedAttemptsWindowSeconds * 1000);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  /** O(TRACKED_SOURCES) at worst, no I/O. */
  note(a: FailedAttempt): void {
    this.counter.inc({ action: a.action, status: String(a.status) });
    let key = `${a.action} ${a.method} ${a.path} ${a.status}`;
    let attempt: Tally['attempt'] = { action: a.action, method: a.method, path: a.path, status: a.status };
    if (!this.tallies.has(key) && this.tallies.size >= MAX_KINDS) {
      key = 'overflow';
      attempt = { action: 'auth.failed', method: '*', path: '*', status: 0 };
    }
    let t = this.tallies.get(key);
    if (!t) this.tallies.set(key, (t = { attempt, total: 0, sources: new Map(), other: 0, firstAt: new Date() }));
    t.total += 1;
    const source = a.source.slice(0, 64);
    const n = t.sources.get(source);
    if (n !== undefined) t.sources.set(source, n + 1);
    else if (t.sources.size < TRACKED_SOURCES) t.sources.set(source, 1);
    else {
      // Full: evict the least frequent source into "other", so heavy sources stay named.
      let min: [string, number] | undefined;
      for (const e of t.sources) if (!min || e[1] < min[1]) min = e;
      if (min![1] > 1)
        t.other += 1; // every tracked source is busier than a newcomer
      else {
        t.sources.delete(min![0]);
        t.other += min![1];
        t.sources.set(source, 1);
      }
    }
  }

  /** Writes one audit record per kind seen in the window that ends now. */
  async flush(): Promise<void> {
    if (this.tallies.size === 0) return;
    const tallies = [...this.tallies.values()];
    this.tallies = new Map();
    const at = new Date();
    for (const t of tallies) {
      const named = [...t.sources].sort((x, y) => y[1] - x[1]);
      const rest = named.slice(NAMED_SOURCES).reduce((sum, [, n]) => sum + n, 0) + t.other;
      const summary =
        `count=${t.total} since=${t.firstAt.toISOString()} sources=${named
          .slice(0, NAMED_SOURCES)
          .map(([s, n]) => `${s}*${n}`)
          .join(',')}` + (rest > 0 ? ` other=${rest}` : '');
      try {
        await this.audit.record({
          at,
          actorId: null,
          actorName: 'unauthenticated (aggregated)',
          action: t.attempt.action,
          method: t.attempt.method,
          path: t.attempt.path,
          target: summary,
          outcome: 'denied',
          status: t.attempt.status,
          requestId: null,
        });
      } catch (err) {
        // The log line keeps the evidence when the chain cannot be written.
        this.logger.error({ err, failedAttempts: { ...t.attempt, summary } }, 'could not write the audit record of failed attempts');
      }
    }
  }
}
