import { Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { HsmService } from '../hsm/hsm.service.js';
import { KeyCustodyError, KeyCustodyErrorCode } from './keys.errors.js';
import { RootKeyRepository, type RootKeyRow } from './root-key.repository.js';

export interface RootKeyView extends RootKeyRow {
  /** Attributes read from the HSM object; undefined once destroyed. */
  hsm?: { sensitive: boolean; extractable: boolean; neverExtractable: boolean; alwaysSensitive: boolean };
  references: number;
}

/**
 * Root key-encryption keys: generated in the HSM (AES-256, sensitive, never extractable),
 * one active version at a time. PostgreSQL records which versions exist and which is active;
 * the keys themselves exist only in the HSM.
 */
@Injectable()
export class RootKeyService implements OnApplicationBootstrap {
  constructor(
    @Inject(RootKeyRepository) private readonly repo: RootKeyRepository,
    @Inject(HsmService) private readonly hsm: HsmService,
    @Inject(PinoLogger) private readonly logger: PinoLogger,
  ) {
    logger.setContext('root-keys');
  }

  async onApplicationBootstrap(): Promise<void> {
    // Under the root-key lock, so two replicas starting together create one key, not two.
    await this.repo.withLock(() => this.hsm.ensureFingerprintKey());
    const version = await this.ensureActive();
    this.logger.info({ version }, 'active root key');
  }

  /** Creates root key version 1 on a fresh installation (one replica does it; the others wait). */
  async ensureActive(): Promise<number> {
    const existing = await this.repo.active();
    if (existing !== undefined) return existing;
    return this.repo.withLock(async (em) => {
      const active = await this.repo.active(em);
      if (active !== undefined) return active;
      const version = (await this.repo.maxVersion(em)) + 1;
      await this.hsm.generateRootKey(version);
      await this.repo.insertActive(em, version);
      this.logger.info({ version }, 'generated root key in the HSM');
      return version;
    });
  }

  async list(): Promise<RootKeyView[]> {
    const [rows, objects] = await Promise.all([this.repo.list(), this.hsm.listRootKeys()]);
    return Promise.all(
      rows.map(async (r) => {
        const o = objects.find((k) => k.version === r.version);
        return {
          ...r,
          references: await this.repo.references(r.version),
          ...(o
            ? {
                hsm: {
                  sensitive: o.sensitive,
                  extractable: o.extractable,
                  neverExtractable: o.neverExtractable,
                  alwaysSensitive: o.alwaysSensitive,
                },
              }
            : {}),
        };
      }),
    );
  }

  /** Destroys a retired root key in the HSM once nothing is wrapped under it any more. */
  async destroy(version: number): Promise<void> {
    await this.repo.withLock(async (em) => {
      const row = await this.repo.find(version, em);
      if (!row) throw new KeyCustodyError(KeyCustodyErrorCode.RootKeyNotFound, `root key version ${version} does not exist`);
      if (row.state !== 'retired')
        throw new KeyCustodyError(KeyCustodyErrorCode.RootKeyNotRetired, `root key version ${version} is ${row.state}, not retired`);
      const refs = await this.repo.references(version, em);
      if (refs > 0)
        throw new KeyCustodyError(
          KeyCustodyErrorCode.RootKeyInUse,
          `${refs} stored keys are still wrapped under root key version ${version}`,
        );
      await this.hsm.destroyRootKey(version);
      await this.repo.markDestroyed(em, version);
    });
    this.logger.info({ version }, 'destroyed root key in the HSM');
  }
}
