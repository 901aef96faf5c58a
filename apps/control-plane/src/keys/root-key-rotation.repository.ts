import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { WrappedKey } from '../hsm/hsm-ops.js';
import { inTransaction, managerOf, type Tx } from '../database/transaction.js';

export interface RotationRow {
  id: string;
  fromVersion: number;
  toVersion: number;
  state: 'running' | 'completed' | 'failed';
  total: number;
  done: number;
  error: string | null;
  startedAt: Date;
  finishedAt: Date | null;
}

/** What a root-key rotation re-wraps: data keys of sealed values, and cluster delivery keys. */
export type RewrapKind = 'dek' | 'cdk';
export const REWRAP_KINDS: readonly RewrapKind[] = ['dek', 'cdk'];

/** Where each kind is stored: the table, and the column holding the key wrapped under `root_key_version`. */
const STORED: Record<RewrapKind, { table: string; wrapped: string }> = {
  dek: { table: 'sealed_values', wrapped: 'wrapped_dek' },
  cdk: { table: 'cluster_keys', wrapped: 'wrapped_key' },
};

const COLUMNS = `id, from_version AS "fromVersion", to_version AS "toVersion", state, total, done, error,
  started_at AS "startedAt", finished_at AS "finishedAt"`;

@Injectable()
export class RootKeyRotationRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  private em(tx: Tx | undefined) {
    return managerOf(this.ds, tx);
  }

  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return inTransaction(this.ds, fn);
  }

  async running(tx?: Tx): Promise<RotationRow | undefined> {
    return (await this.em(tx).query<RotationRow[]>(`SELECT ${COLUMNS} FROM root_key_rotations WHERE state = 'running'`))[0];
  }

  async find(id: string): Promise<RotationRow | undefined> {
    return (await this.ds.query<RotationRow[]>(`SELECT ${COLUMNS} FROM root_key_rotations WHERE id = $1`, [id]))[0];
  }

  async insert(tx: Tx, fromVersion: number, toVersion: number, total: number): Promise<RotationRow> {
    const rows = await this.em(tx).query<RotationRow[]>(
      `INSERT INTO root_key_rotations (from_version, to_version, state, total) VALUES ($1, $2, 'running', $3) RETURNING ${COLUMNS}`,
      [fromVersion, toVersion, total],
    );
    return rows[0]!;
  }

  async addDone(tx: Tx, id: string, n: number): Promise<void> {
    await this.em(tx).query('UPDATE root_key_rotations SET done = done + $2 WHERE id = $1', [id, n]);
  }

  async complete(id: string): Promise<void> {
    await this.ds.query(
      `UPDATE root_key_rotations SET state = 'completed', finished_at = now(), done = total WHERE id = $1 AND state = 'running'`,
      [id],
    );
  }

  /** A batch of `kind` still wrapped under another root key, locked so concurrent rotators skip it. */
  async lockBatchNotAt(tx: Tx, kind: RewrapKind, version: number, limit: number): Promise<Array<WrappedKey & { id: string }>> {
    const { table, wrapped } = STORED[kind];
    const rows = await this.em(tx).query<Array<{ id: string; root_key_version: number; wrapped: Buffer }>>(
      `SELECT id, root_key_version, ${wrapped} AS wrapped FROM ${table} WHERE root_key_version <> $1
        ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED`,
      [version, limit],
    );
    return rows.map((r) => ({ id: r.id, rootKeyVersion: r.root_key_version, wrapped: r.wrapped }));
  }

  async setWrapped(tx: Tx, kind: RewrapKind, version: number, ids: string[], wrapped: Buffer[]): Promise<void> {
    const { table, wrapped: column } = STORED[kind];
    await this.em(tx).query(
      `UPDATE ${table} AS t SET ${column} = v.w, root_key_version = $1
         FROM unnest($2::uuid[], $3::bytea[]) AS v(id, w) WHERE t.id = v.id`,
      [version, ids, wrapped],
    );
  }

  /** How many stored keys of every kind are not yet wrapped under `version`. */
  async countNotAt(version: number, tx?: Tx): Promise<number> {
    const rows = await this.em(tx).query<Array<{ n: string }>>(
      `SELECT (SELECT count(*) FROM sealed_values WHERE root_key_version <> $1)
            + (SELECT count(*) FROM cluster_keys WHERE root_key_version <> $1) AS n`,
      [version],
    );
    return Number(rows[0]?.n ?? 0);
  }
}
