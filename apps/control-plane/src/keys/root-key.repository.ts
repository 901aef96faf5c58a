import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { inTransaction, managerOf, type Tx } from '../database/transaction.js';

export type RootKeyState = 'active' | 'retired' | 'destroyed';

export interface RootKeyRow {
  version: number;
  state: RootKeyState;
  createdAt: Date;
  retiredAt: Date | null;
  destroyedAt: Date | null;
}

/** Serialises root-key changes (creation, rotation, destruction) across replicas. */
const ROOT_KEY_LOCK = 0x5161_0002;

@Injectable()
export class RootKeyRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  private em(tx: Tx | undefined) {
    return managerOf(this.ds, tx);
  }

  /** Runs `fn` in a transaction holding the cluster-wide root-key lock. */
  withLock<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return inTransaction(this.ds, async (tx) => {
      await this.em(tx).query('SELECT pg_advisory_xact_lock($1)', [ROOT_KEY_LOCK]);
      return fn(tx);
    });
  }

  /**
   * For sealing: a shared hold on the root-key lock for the rest of the transaction, and the
   * active version read under it. Rotation and destruction take the lock exclusively, so a
   * value is never sealed under a key that is being retired or destroyed.
   */
  async activeForSealing(tx: Tx): Promise<number | undefined> {
    await this.em(tx).query('SELECT pg_advisory_xact_lock_shared($1)', [ROOT_KEY_LOCK]);
    return this.active(tx);
  }

  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return inTransaction(this.ds, fn);
  }

  async active(tx?: Tx): Promise<number | undefined> {
    const rows = await this.em(tx).query<Array<{ version: number }>>(`SELECT version FROM root_keys WHERE state = 'active'`);
    return rows[0]?.version;
  }

  async maxVersion(tx: Tx): Promise<number> {
    const rows = await this.em(tx).query<Array<{ v: number | null }>>('SELECT max(version) AS v FROM root_keys');
    return rows[0]?.v ?? 0;
  }

  async insertActive(tx: Tx, version: number): Promise<void> {
    await this.em(tx).query(`INSERT INTO root_keys (version, state) VALUES ($1, 'active')`, [version]);
  }

  async retire(tx: Tx, version: number): Promise<void> {
    await this.em(tx).query(`UPDATE root_keys SET state = 'retired', retired_at = now() WHERE version = $1 AND state = 'active'`, [
      version,
    ]);
  }

  async markDestroyed(tx: Tx, version: number): Promise<void> {
    await this.em(tx).query(`UPDATE root_keys SET state = 'destroyed', destroyed_at = now() WHERE version = $1`, [version]);
  }

  async find(version: number, tx?: Tx): Promise<RootKeyRow | undefined> {
    return (await this.list(tx)).find((r) => r.version === version);
  }

  async list(tx?: Tx): Promise<RootKeyRow[]> {
    return this.em(tx).query<RootKeyRow[]>(
      `SELECT version, state, created_at AS "createdAt", retired_at AS "retiredAt", destroyed_at AS "destroyedAt"
         FROM root_keys ORDER BY version`,
    );
  }

  /** How many stored keys (sealed values and cluster keys) are still wrapped under `version`. */
  async references(version: number, tx?: Tx): Promise<number> {
    const rows = await this.em(tx).query<Array<{ n: string }>>(
      `SELECT (SELECT count(*) FROM sealed_values WHERE root_key_version = $1)
            + (SELECT count(*) FROM cluster_keys WHERE root_key_version = $1) AS n`,
      [version],
    );
    return Number(rows[0]?.n ?? 0);
  }
}
