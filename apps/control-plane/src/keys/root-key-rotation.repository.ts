import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
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
}
