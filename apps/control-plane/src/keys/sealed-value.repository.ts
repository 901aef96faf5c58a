import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { managerOf, type Tx } from '../database/transaction.js';
import type { SealedValue } from '../hsm/hsm-ops.js';

export interface StoredSealedValue extends SealedValue {
  id: string;
}

interface Row {
  id: string;
  root_key_version: number;
  wrapped_dek: Buffer;
  iv: Buffer;
  ciphertext: Buffer;
}

const toSealed = (r: Row): StoredSealedValue => ({
  id: r.id,
  rootKeyVersion: r.root_key_version,
  wrappedDek: r.wrapped_dek,
  iv: r.iv,
  ciphertext: r.ciphertext,
});

/** Ciphertext and wrapped data keys; never a value, never an unwrapped key. */
@Injectable()
export class SealedValueRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  private em(tx: Tx | undefined) {
    return managerOf(this.ds, tx);
  }

  async insertMany(values: SealedValue[], tx?: Tx): Promise<string[]> {
    if (values.length === 0) return [];
    const rows = await this.em(tx).query<Array<{ id: string }>>(
      `INSERT INTO sealed_values (root_key_version, wrapped_dek, iv, ciphertext)
       SELECT * FROM unnest($1::int[], $2::bytea[], $3::bytea[], $4::bytea[])
       RETURNING id`,
      [values.map((v) => v.rootKeyVersion), values.map((v) => v.wrappedDek), values.map((v) => v.iv), values.map((v) => v.ciphertext)],
    );
    return rows.map((r) => r.id);
  }

  async findByIds(ids: string[], tx?: Tx): Promise<Map<string, StoredSealedValue>> {
    const rows = await this.em(tx).query<Row[]>(
      'SELECT id, root_key_version, wrapped_dek, iv, ciphertext FROM sealed_values WHERE id = ANY($1::uuid[])',
      [ids],
    );
    return new Map(rows.map((r) => [r.id, toSealed(r)]));
  }
}
