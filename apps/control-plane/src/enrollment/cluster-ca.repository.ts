import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { managerOf, type Tx } from '../database/transaction.js';

@Injectable()
export class ClusterCaRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  private em(tx: Tx | undefined) {
    return managerOf(this.ds, tx);
  }

  async current(tx?: Tx): Promise<Buffer | undefined> {
    const rows = await this.em(tx).query<Array<{ certificate_der: Buffer }>>(
      'SELECT certificate_der FROM certificate_authorities ORDER BY version DESC LIMIT 1',
    );
    return rows[0]?.certificate_der;
  }

  async insert(tx: Tx, version: number, der: Buffer): Promise<void> {
    await this.em(tx).query('INSERT INTO certificate_authorities (version, certificate_der) VALUES ($1, $2)', [version, der]);
  }
}
