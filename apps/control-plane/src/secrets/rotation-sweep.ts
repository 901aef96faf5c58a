import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { RuntimeConfig } from '../config/runtime-config.js';
import { SecretsRepository } from './secrets.repository.js';
import { SecretsService } from './secrets.service.js';

/** Due secrets read per sweep round; a full round is followed at once by another. */
const BATCH = 50;

/**
 * Level-triggered rotation of generated secrets: every worker replica reads, each interval, the
 * secrets whose `next_rotation_at` has passed (PostgreSQL is the truth: nothing is lost to a
 * restart or a Redis flush) and rotates each through SecretsService.rotateDue, which claims the
 * row FOR NO KEY UPDATE SKIP LOCKED and re-checks it is due, so replicas sweeping at once rotate
 * a secret once. A failure (HSM away, database busy) leaves the secret due: the next sweep retries.
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
    const failed = new Set<string>();
    for (;;) {
      const due = (await this.repo.dueRotations(BATCH + failed.size)).filter((d) => !failed.has(d.id));
      if (due.length === 0 || this.stopped) return rotated;
      let progress = false; // this round rotated something
      for (const d of due.slice(0, BATCH)) {
        if (this.stopped) return rotated;
        try {
          if (await this.secrets.rotateDue(d)) {
            rotated++;
            progress = true;
            this.logger.info({ project: d.project, app: d.app, secret: d.name }, 'generated secret rotated on schedule');
          }
        } catch (err) {
          // Names only; the values never leave SecretsService.
          failed.add(d.id);
          this.logger.warn({ err, project: d.project, app: d.app, secret: d.name }, 'scheduled rotation failed; the next sweep retries');
        }
      }
      // Nothing rotated: what is left is held by another replica or failed; the next interval looks again.
      if (!progress || due.length < BATCH) return rotated;
    }
  }
}
