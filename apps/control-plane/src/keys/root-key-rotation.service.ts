import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { setTimeout as sleep } from 'node:timers/promises';
import { RuntimeConfig } from '../config/runtime-config.js';
import { HsmService } from '../hsm/hsm.service.js';
import { KeyCustodyError, KeyCustodyErrorCode } from './keys.errors.js';
import { RootKeyRepository } from './root-key.repository.js';
import { REWRAP_KINDS, RootKeyRotationRepository, type RotationRow } from './root-key-rotation.repository.js';
import { RootKeyService } from './root-keys.service.js';

const BATCH = 500;
const RETRY_MS = 5_000;
const POLL_MS = 30_000;

/**
 * Root-key rotation: a new root key becomes active at once (new values use it), then a
 * background job re-wraps every stored data key and cluster key from older versions to it,
 * in batches, inside the HSM. Progress lives in PostgreSQL; any replica with the worker role
 * resumes a rotation after a restart, and several can work on one (rows are locked with
 * SKIP LOCKED). Nothing is decrypted: the ciphertexts do not change.
 */
@Injectable()
export class RootKeyRotationService implements OnApplicationBootstrap, OnApplicationShutdown {
  private current: Promise<void> | undefined;
  private poll: NodeJS.Timeout | undefined;
  private stopping = false;

  constructor(
    @Inject(RuntimeConfig) private readonly config: RuntimeConfig,
    @Inject(HsmService) private readonly hsm: HsmService,
    @Inject(RootKeyService) private readonly rootKeys: RootKeyService,
    @Inject(RootKeyRepository) private readonly rootKeyRepo: RootKeyRepository,
    @Inject(RootKeyRotationRepository) private readonly repo: RootKeyRotationRepository,
    @Inject(PinoLogger) private readonly logger: PinoLogger,
  ) {
    logger.setContext('root-key-rotation');
  }

  async onApplicationBootstrap(): Promise<void> {
    if (!this.config.roles.includes('worker')) return;
    await this.pickUp();
    // A rotation started on a replica without the worker role is picked up by the workers.
    this.poll = setInterval(
      () => void this.pickUp().catch((err: unknown) => this.logger.warn({ err }, 'checking for root key rotations failed')),
      POLL_MS,
    );
    this.poll.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopping = true;
    clearInterval(this.poll);
    await this.current;
  }

  private async pickUp(): Promise<void> {
    if (this.current || this.stopping) return;
    const running = await this.repo.running();
    if (running) {
      this.logger.info({ rotation: running.id, done: running.done, total: running.total }, 'resuming root key rotation');
      this.runInBackground(running.id);
    }
  }

  /** Generates root key N+1 in the HSM, makes it active, and starts re-wrapping everything else. */
  async start(): Promise<RotationRow> {
    const rotation = await this.rootKeyRepo.withLock(async (tx) => {
      if (await this.repo.running(tx))
        throw new KeyCustodyError(KeyCustodyErrorCode.RotationInProgress, 'a root key rotation is already running');
      const from = await this.rootKeyRepo.active(tx);
      if (from === undefined) throw new KeyCustodyError(KeyCustodyErrorCode.NoActiveRootKey, 'no active root key');
      const to = (await this.rootKeyRepo.maxVersion(tx)) + 1;
      await this.hsm.generateRootKey(to); // idempotent: a crash here leaves a key the retry reuses
      await this.rootKeyRepo.retire(tx, from);
      await this.rootKeyRepo.insertActive(tx, to);
      const total = await this.repo.countNotAt(to, tx);
      return this.repo.insert(tx, from, to, total);
    });
    this.logger.info(
      { rotation: rotation.id, from: rotation.fromVersion, to: rotation.toVersion, total: rotation.total },
      'root key rotation started',
    );
    if (this.config.roles.includes('worker')) this.runInBackground(rotation.id);
    return rotation;
  }

  async status(id?: string): Promise<RotationRow | undefined> {
    return id ? this.repo.find(id) : this.repo.running();
  }

  /**
   * Re-wraps until nothing is left under an older root key (or `maxBatches` batches, for tests
   * that stop half-way). Returns how many keys this call re-wrapped.
   */
  async run(id: string, maxBatches = Number.POSITIVE_INFINITY): Promise<number> {
    const rotation = await this.repo.find(id);
    if (!rotation || rotation.state !== 'running') return 0;
    let total = 0;
    for (let batches = 0; batches < maxBatches && !this.stopping; batches++) {
      const n = await this.step(rotation);
      if (n === 0) {
        // An empty batch may only mean other rotators hold the remaining rows (SKIP LOCKED):
        // done is when nothing at all is left under an older root key.
        const left = await this.repo.countNotAt(rotation.toVersion);
        if (left > 0) {
          await sleep(200);
          continue;
        }
        await this.repo.complete(id);
        this.logger.info({ rotation: id, to: rotation.toVersion }, 'root key rotation completed');
        break;
      }
      total += n;
    }
    return total;
  }

  /** One batch: data keys first, then cluster delivery keys; 0 when this rotator finds nothing unlocked left. */
  private async step(rotation: RotationRow): Promise<number> {
    const to = rotation.toVersion;
    return this.repo.transaction(async (tx) => {
      for (const kind of REWRAP_KINDS) {
        const batch = await this.repo.lockBatchNotAt(tx, kind, to, BATCH);
        if (batch.length === 0) continue;
        const wrapped = await this.hsm.rewrap(kind, to, batch);
        await this.repo.setWrapped(
          tx,
          kind,
          to,
          batch.map((k) => k.id),
          wrapped,
        );
        await this.repo.addDone(tx, rotation.id, batch.length);
        return batch.length;
      }
      return 0;
    });
  }

  private runInBackground(id: string): void {
    if (this.current) return;
    this.current = (async () => {
      while (!this.stopping) {
        try {
          await this.run(id);
          return;
        } catch (err) {
          // Level-triggered: whatever failed (HSM, database) is retried; nothing is lost.
          this.logger.warn({ err, rotation: id }, 'root key rotation step failed; retrying');
          await sleep(RETRY_MS);
        }
      }
    })().finally(() => (this.current = undefined));
  }
}
