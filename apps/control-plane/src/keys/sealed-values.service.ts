import { Inject, Injectable } from '@nestjs/common';
import { valueAad, type ValueContext } from '@sigil/envelope';
import type { Tx } from '../database/transaction.js';
import type { ConnectionSecretContext } from '../hsm/hsm-ops.js';
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

  /**
   * Seals a database connection's admin password (docs/crypto.md, "Database connections") in
   * `tx`, under the connection AAD, into sealed_values like any value (so root-key rotation
   * re-wraps it and root-key destruction counts it). Zeroes `value`.
   */
  async sealConnectionSecret(tx: Tx, context: ConnectionSecretContext, value: Buffer): Promise<string> {
    try {
      const version = await this.rootKeys.activeForSealing(tx);
      if (version === undefined) throw new KeyCustodyError(KeyCustodyErrorCode.NoActiveRootKey, 'no active root key');
      const [id] = await this.repo.insertMany([await this.hsm.sealConnectionSecret(version, context, value)], tx);
      return id!;
    } finally {
      value.fill(0);
    }
  }

  /** Opens a connection's admin password for one call; the caller zeroes the buffer when done. */
  async openConnectionSecret(tx: Tx | undefined, context: ConnectionSecretContext, sealedValueId: string): Promise<Buffer> {
    const sealed = (await this.repo.findByIds([sealedValueId], tx)).get(sealedValueId);
    if (!sealed) throw new KeyCustodyError(KeyCustodyErrorCode.SealedValueMissing, 'the connection secret is missing');
    return this.hsm.openConnectionSecret(context, sealed);
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
