import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { RuntimeConfig } from '../config/runtime-config.js';
import { ClusterEvents } from '../events/cluster-events.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { LeaseIssuer } from './lease-issuer.js';
import { LeaseRevoker } from './lease-revoker.js';
import { LeasesRepository } from './leases.repository.js';
import { safeError } from './lease-work.js';

/**
 * Wakes closer together than this gather into one sweep. Events come per enrollment and per
 * batch of agent reports: at 75 enrollments a second, a sweep per event was five statements
 * each, a third of what the enrollments themselves cost PostgreSQL. The first wake after a quiet
 * spell sweeps at once, so a single unpublish or disable is revoked as fast as before.
 */
const WAKE_GATHER_MS = 250;

/**
 * The leases sweeps in every worker replica (decision 020): level-triggered like the rotation
 * sweep — PostgreSQL is the truth, every pass re-reads what is due, so a restart, a lost event
 * or a flushed Redis only delays — and woken early by events (publish, unpublish, a cluster
 * disabled or deleted, an agent's status report) so revocation happens within seconds. The
 * revocation pass (what must stop working) and the issue pass (new credentials, renewals) run
 * side by side. The reaper runs at start and every SIGIL_LEASE_REAPER_INTERVAL_MS.
 */
@Injectable()
export class LeaseSweep implements OnApplicationBootstrap, OnApplicationShutdown {
  private timer: NodeJS.Timeout | undefined;
  private reaperTimer: NodeJS.Timeout | undefined;
  private reaping: Promise<void> | undefined;
  private unsubscribe: (() => void) | undefined;
  private stopped = false;
  private lastWakeAt = 0;
  private wakeTimer: NodeJS.Timeout | undefined;

  constructor(
    @Inject(LeaseIssuer) private readonly issuer: LeaseIssuer,
    @Inject(LeaseRevoker) private readonly revoker: LeaseRevoker,
    @Inject(LeasesRepository) private readonly repo: LeasesRepository,
    @Inject(ClusterEvents) private readonly events: ClusterEvents,
    @Inject(MetricsService) private readonly metrics: MetricsService,
    @Inject(RuntimeConfig) private readonly config: RuntimeConfig,
    @Inject(PinoLogger) private readonly logger: PinoLogger,
  ) {
    logger.setContext('leases');
  }

  onApplicationBootstrap(): void {
    if (!this.config.roles.includes('worker')) return;
    this.timer = setInterval(() => void this.tick(), this.config.leases.sweepIntervalMs).unref();
    this.reaperTimer = setInterval(() => void this.reap(), this.config.leases.reaperIntervalMs).unref();
    // Hints only: whatever they say, the pass re-reads PostgreSQL.
    this.unsubscribe = this.events.on((e) => {
      if (e.type !== 'desired') this.wake();
    });
    void this.reap();
    void this.tick();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    this.issuer.stop();
    this.revoker.stop();
    clearInterval(this.timer);
    clearInterval(this.reaperTimer);
    clearTimeout(this.wakeTimer);
    this.unsubscribe?.();
    await Promise.all([this.marking.current, this.revoking.current, this.issuing.current, this.reaping]);
  }

  /**
   * Something changed: sweep now, or (woken again within WAKE_GATHER_MS) once at the end of that
   * window for every wake in it. No-op outside workers.
   */
  wake(): void {
    if (!this.config.roles.includes('worker') || this.stopped || this.wakeTimer) return;
    const sweep = () => {
      this.wakeTimer = undefined;
      this.lastWakeAt = Date.now();
      void this.tick();
    };
    const wait = this.lastWakeAt + WAKE_GATHER_MS - Date.now();
    if (wait <= 0) sweep();
    else this.wakeTimer = setTimeout(sweep, wait);
  }

  /**
   * One marking, one revocation and one issue pass, each unless one is running (then once more
   * right after it). They run side by side: a fleet-wide issue never holds back a revocation,
   * and a slow revocation never holds back marking what must go.
   */
  tick(): Promise<void> {
    return Promise.all([this.marking.run(), this.revoking.run(), this.issuing.run()]).then(() => this.gauge());
  }

  // Marking on its own too: a revocation pass waiting on a slow target must not delay the
  // withdrawal of expired or unpublished credentials from clusters.
  private readonly marking = new Pass(
    () => this.revoker.markDue(),
    (err) => this.logger.warn({ err: safeError(err) }, 'lease marking pass failed; the next one retries'),
    () => this.stopped,
  );

  private readonly revoking = new Pass(
    () => this.revoker.revoke(),
    (err) => this.logger.warn({ err: safeError(err) }, 'lease revocation pass failed; the next one retries'),
    () => this.stopped,
  );
  private readonly issuing = new Pass(
    () => this.issuer.issue(),
    (err) => this.logger.warn({ err: safeError(err) }, 'lease issue pass failed; the next one retries'),
    () => this.stopped,
  );

  /** Revocations, then issues and renewals, to completion (tests). */
  async pass(): Promise<void> {
    await this.revoker.revoke();
    await this.issuer.issue();
    await this.gauge();
  }

  private async gauge(): Promise<void> {
    const counts = await this.repo.countByState().catch(() => undefined);
    if (!counts) return;
    for (const state of ['intent', 'active', 'superseded', 'revoking']) this.metrics.leases.set({ state }, counts.get(state) ?? 0);
  }

  reap(): Promise<void> {
    const run = (this.reaping ??= this.revoker
      .reap()
      .then((n) => {
        if (n > 0) this.logger.info({ roles: n }, 'reaper revoked roles no live lease names');
      })
      .catch((err: unknown) => this.logger.warn({ err: safeError(err) }, 'reaper pass failed; the next one retries'))
      .finally(() => (this.reaping = undefined)));
    return run;
  }
}

/** A pass that runs once at a time; asked again while running, it runs once more right after. */
class Pass {
  current: Promise<void> | undefined;
  private again = false;

  constructor(
    private readonly work: () => Promise<unknown>,
    private readonly failed: (err: unknown) => void,
    private readonly stopped: () => boolean,
  ) {}

  run(): Promise<void> {
    if (this.current) {
      this.again = true;
      return this.current;
    }
    this.current = this.work()
      .then(() => undefined, this.failed)
      .finally(() => {
        this.current = undefined;
        if (this.again && !this.stopped()) {
          this.again = false;
          void this.run();
        }
      });
    return this.current;
  }
}
