import { Inject, Injectable } from '@nestjs/common';
import { valueAad, type ValueContext } from '@sigil/envelope';
import type { Tx } from '../database/transaction.js';
import { HsmService } from '../hsm/hsm.service.js';
import { KeyCustodyError, KeyCustodyErrorCode } from './keys.errors.js';
import { RootKeyRepository } from './root-key.repository.js';
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
    @Inject(RootKeyRepository) private readonly rootKeys: RootKeyRepository,
    @Inject(SealedValueRepository) private readonly repo: SealedValueRepository,
  ) {}

  /** Seals and stores each value; returns the sealed-value ids in input order. Pass `tx` to join a transaction. */
  async seal(items: ValueToSeal[], tx?: Tx): Promise<string[]> {
    try {
      if (!tx) return await this.rootKeys.transaction((own) => this.sealIn(own, items));
      return await this.sealIn(tx, items);
    } finally {
      for (const i of items) i.value.fill(0);
    }
  }

  private async sealIn(tx: Tx, items: ValueToSeal[]): Promise<string[]> {
    const version = await this.rootKeys.activeForSealing(tx);
    if (version === undefined) throw new KeyCustodyError(KeyCustodyErrorCode.NoActiveRootKey, 'no active root key');
    const sealed = await this.hsm.seal(
      version,
      items.map((i) => ({ plaintext: i.value, aad: valueAad(i.context) })),
    );
    return this.repo.insertMany(sealed, tx);
  }
}
