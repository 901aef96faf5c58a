import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { inTransaction, managerOf, type Tx } from '../database/transaction.js';

/** pg advisory lock: one replica creates the cluster CA (its HSM key and certificate) at a time. */
const CA_CREATION_LOCK = 0x5161_0003;

@Injectable()
export class ClusterCaRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  private em(tx: Tx | undefined) {
    return managerOf(this.ds, tx);
  }

  /** A transaction holding the CA-creation lock: replicas starting together create one CA, not two. */
  creationTransaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return inTransaction(this.ds, async (tx) => {
      await this.em(tx).query('SELECT pg_advisory_xact_lock($1)', [CA_CREATION_LOCK]);
      return fn(tx);
    });
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
