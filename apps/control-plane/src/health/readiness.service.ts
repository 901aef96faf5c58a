import { Inject, Injectable } from '@nestjs/common';
import { DatabaseHealth } from '../database/database.module.js';
import { HsmService } from '../hsm/hsm.service.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { RedisConnection } from '../redis/redis.module.js';

export type Dependency = 'postgres' | 'redis' | 'hsm';

export interface CheckResult {
  ok: boolean;
  /** Non-sensitive detail: "ok", the HSM's capabilities, or why the check failed. */
  detail: unknown;
  ms: number;
}

export interface Readiness {
  ready: boolean;
  failed: Dependency[];
  checks: Record<Dependency, CheckResult>;
}

/** Each check gets this long; a hung dependency must not hang the probe. */
const CHECK_TIMEOUT_MS = 2_000;

@Injectable()
export class ReadinessService {
  private readonly checks: Record<Dependency, () => Promise<unknown>>;

  constructor(
    @Inject(DatabaseHealth) db: DatabaseHealth,
    @Inject(RedisConnection) redis: RedisConnection,
    @Inject(HsmService) hsm: HsmService,
    @Inject(MetricsService) private readonly metrics: MetricsService,
  ) {
    this.checks = { postgres: () => db.check(), redis: () => redis.check(), hsm: () => hsm.check() };
  }

  async evaluate(): Promise<Readiness> {
    const names = Object.keys(this.checks) as Dependency[];
    const results = await Promise.all(names.map((name) => this.run(name)));
    const checks = Object.fromEntries(names.map((n, i) => [n, results[i]!])) as Record<Dependency, CheckResult>;
    const failed = names.filter((n) => !checks[n].ok);
    return { ready: failed.length === 0, failed, checks };
  }

  private async run(name: Dependency): Promise<CheckResult> {
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      const detail = await Promise.race([
        this.checks[name](),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
        }),
      ]);
      this.record(name, true);
      return { ok: true, detail, ms: Math.round(performance.now() - started) };
    } catch (err) {
      this.record(name, false);
      return { ok: false, detail: describe(err), ms: Math.round(performance.now() - started) };
    } finally {
      clearTimeout(timer);
    }
  }

  private record(name: Dependency, ok: boolean): void {
    this.metrics.dependencyUp.set({ dependency: name }, ok ? 1 : 0);
    this.metrics.readinessChecks.inc({ dependency: name, outcome: ok ? 'ok' : 'failed' });
  }
}

/** Error text for the probe: the message only (drivers do not put credentials in messages). */
function describe(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.replace(/\/\/[^@/\s]*@/g, '//***@').slice(0, 200);
}
