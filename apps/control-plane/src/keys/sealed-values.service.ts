import { Inject, Injectable } from '@nestjs/common';
import { valueAad, type ValueContext } from '@sigil/envelope';
import type { EntityManager } from 'typeorm';
import { HsmService } from '../hsm/hsm.service.js';
import { HsmError } from '../hsm/hsm-worker-pool.js';
import { RootKeyService } from './root-keys.service.js';
import { SealedValueRepository } from './sealed-value.repository.js';

export interface ValueToSeal {
  /** The plaintext. Zeroed once sealed: callers must not reuse it. */
  value: Buffer;
  context: ValueContext;
}

/** Encrypt-on-ingest: values go to the HSM the moment they arrive; only ciphertext is stored. */
@Injectable()
export class SealedValueService {
  constructor(
    @Inject(HsmService) private readonly hsm: HsmService,
    @Inject(RootKeyService) private readonly rootKeys: RootKeyService,
    @Inject(SealedValueRepository) private readonly repo: SealedValueRepository,
  ) {}

  /** Seals and stores each value; returns the sealed-value ids in input order. Pass `em` to join a transaction. */
  async seal(items: ValueToSeal[], em?: EntityManager): Promise<string[]> {
    try {
      const requests = items.map((i) => ({ plaintext: i.value, aad: valueAad(i.context) }));
      let sealed;
      try {
        sealed = await this.hsm.seal(await this.rootKeys.activeVersion(), requests);
      } catch (err) {
        if (!(err instanceof HsmError)) throw err;
        // The active root key may have changed under us (rotation on another replica): re-read once.
        this.rootKeys.invalidate();
        sealed = await this.hsm.seal(await this.rootKeys.activeVersion(), requests);
      }
      return await this.repo.insertMany(sealed, em);
    } finally {
      for (const i of items) i.value.fill(0);
    }
  }
}
