import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { RuntimeConfig } from '../config/runtime-config.js';
import { SecretsRepository } from './secrets.repository.js';
import { SecretsService } from './secrets.service.js';

/** Due secrets read per sweep round; a full round is followed at once by another. */
const BATCH = 50;
/** A secret whose scheduled rotation failed is tried again after this many sweep intervals. */
const RETRY_INTERVALS = 5;
const STANDARD_DAY_S = 86_400;

/**
 * Level-triggered rotation of generated secrets: every worker replica reads, each interval, the
 * secrets whose `next_rotation_at` has passed (PostgreSQL is the truth: nothing is lost to a
 * restart or a Redis flush) and rotates each through SecretsService.rotateDue, which claims the
 * row FOR NO KEY UPDATE SKIP LOCKED and re-checks it is due, so replicas sweeping at once rotate
 * a secret once. A failure (HSM away, database busy) is tried again a few intervals later (the
 * due time moves; if even that write fails, the secret stays due for the next sweep).
 */
@Injectable()
export class RotationSweep implements OnApplicationBootstrap, OnApplicationShutdown {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    @Inject(SecretsRepository) private readonly repo: SecretsRepository,
    @Inject(SecretsService) private readonly secrets: SecretsService,
    @Inject(RuntimeConfig) private readonly config: RuntimeConfig,
    @Inject(PinoLogger) private readonly logger: PinoLogger,
  ) {
    logger.setContext('rotation');
  }

  onApplicationBootstrap(): void {
    if (!this.config.roles.includes('worker')) return;
    if (this.config.rotation.daySeconds !== STANDARD_DAY_S)
      this.logger.warn(
        { daySeconds: this.config.rotation.daySeconds },
        'SIGIL_ROTATION_DAY_S is not 86400: every rotation schedule runs on this shortened "day" (meant for tests only)',
      );
    this.timer = setInterval(() => void this.tick(), this.config.rotation.sweepIntervalMs);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }

  /** One sweep, unless the previous one is still running. */
  tick(): Promise<void> {
    const run = (this.running ??= this.sweep()
      .then(() => undefined)
      .catch((err: unknown) => this.logger.warn({ err }, 'rotation sweep failed; the next one retries'))
      .finally(() => (this.running = undefined)));
    return run;
  }

  /** Rotates what is due now; returns how many this replica rotated. */
  async sweep(): Promise<number> {
    let rotated = 0;
    // Looked at this sweep and not rotated (another replica holds it, or it failed): not again.
    const passed = new Set<string>();
    for (;;) {
      const due = (await this.repo.dueRotations(BATCH + passed.size)).filter((d) => !passed.has(d.id));
      if (due.length === 0 || this.stopped) return rotated;
      for (const d of due.slice(0, BATCH)) {
        if (this.stopped) return rotated;
        try {
          if (await this.secrets.rotateDue(d)) {
            rotated++;
            this.logger.info({ project: d.project, app: d.app, secret: d.name }, 'generated secret rotated on schedule');
          } else passed.add(d.id);
        } catch (err) {
          // Names only; the values never leave SecretsService.
          passed.add(d.id);
          const retryInS = Math.max(1, Math.ceil((this.config.rotation.sweepIntervalMs * RETRY_INTERVALS) / 1000));
          await this.repo.postponeRotation(d.id, retryInS).catch(() => undefined); // still due: the next sweep retries
          this.logger.warn({ err, project: d.project, app: d.app, secret: d.name, retryInS }, 'scheduled rotation failed; retried later');
        }
      }
    }
  }
}
