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

  findByName(projectId: string, name: string, tx?: Tx): Promise<DatabaseConnectionEntity | null> {
    return managerOf(this.ds, tx).findOneBy(DatabaseConnectionEntity, { projectId, name });
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

  /** Its sealed admin password goes with it (trigger database_connections_drop_sealed). */
  async delete(id: string, tx: Tx): Promise<void> {
    await managerOf(this.ds, tx).delete(DatabaseConnectionEntity, { id });
  }
}
