import { Inject, Injectable } from '@nestjs/common';
import { DataSource, MoreThan, type FindOptionsWhere, type Repository } from 'typeorm';
import { updateLocked } from '../database/locked-update.js';
import { managerOf, type Tx } from '../database/transaction.js';
import { DatabaseConnectionEntity } from './connection.entity.js';

@Injectable()
export class ConnectionsRepository {
  private readonly repo: Repository<DatabaseConnectionEntity>;

  constructor(@Inject(DataSource) private readonly ds: DataSource) {
    this.repo = ds.getRepository(DatabaseConnectionEntity);
  }

  findByName(projectId: string, name: string, tx?: Tx, hold = false): Promise<DatabaseConnectionEntity | null> {
    return managerOf(this.ds, tx).findOne(DatabaseConnectionEntity, {
      where: { projectId, name },
      ...(hold && tx ? { lock: { mode: 'for_key_share' as const } } : {}),
    });
  }

  findById(id: string, tx?: Tx): Promise<DatabaseConnectionEntity | null> {
    return managerOf(this.ds, tx).findOneBy(DatabaseConnectionEntity, { id });
  }

  list(projectId: string, after: string | undefined, limit: number): Promise<DatabaseConnectionEntity[]> {
    const where: FindOptionsWhere<DatabaseConnectionEntity> = { projectId };
    if (after !== undefined) where.name = MoreThan(after);
    return this.repo.find({ where, order: { name: 'ASC' }, take: limit });
  }

  insert(c: Omit<DatabaseConnectionEntity, 'createdAt' | 'updatedAt' | 'version'>, tx: Tx): Promise<DatabaseConnectionEntity> {
    const em = managerOf(this.ds, tx);
    return em.save(em.create(DatabaseConnectionEntity, c));
  }

  /** Row-locked read-modify-write (see updateLocked). */
  updateLocked(id: string, mutate: (c: DatabaseConnectionEntity) => void, tx: Tx): Promise<DatabaseConnectionEntity | null> {
    return updateLocked(managerOf(this.ds, tx), DatabaseConnectionEntity, { id }, mutate);
  }

  /** The row under FOR UPDATE, for a delete in the same transaction. */
  lock(id: string, tx: Tx): Promise<DatabaseConnectionEntity | null> {
    return managerOf(this.ds, tx).findOne(DatabaseConnectionEntity, { where: { id }, lock: { mode: 'pessimistic_write' } });
  }

  /**
   * Connections whose role prefix overlaps `prefix` (one starts with the other): roles are
   * server-wide, so the reaper of either could take the other's roles for its own. Read after
   * lockForPrefixCheck, so two creates cannot both pass.
   */
  async overlappingPrefixes(prefix: string, tx: Tx): Promise<string[]> {
    const rows = await managerOf(this.ds, tx).query<Array<{ role_prefix: string }>>(
      `SELECT role_prefix FROM database_connections WHERE starts_with(role_prefix, $1) OR starts_with($1, role_prefix) LIMIT 5`,
      [prefix],
    );
    return rows.map((r) => r.role_prefix);
  }

  /** Serializes connection creates (rare) for the prefix check; reads and updates go on. */
  async lockForPrefixCheck(tx: Tx): Promise<void> {
    await managerOf(this.ds, tx).query('LOCK TABLE database_connections IN SHARE ROW EXCLUSIVE MODE');
  }

  /** Its sealed admin password goes with it (trigger database_connections_drop_sealed). */
  async delete(id: string, tx: Tx): Promise<void> {
    await managerOf(this.ds, tx).delete(DatabaseConnectionEntity, { id });
  }
}
