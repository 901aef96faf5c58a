import { Inject, Injectable } from '@nestjs/common';
import { DataSource, IsNull, type Repository } from 'typeorm';
import { inTransaction, managerOf, type Tx } from '../database/transaction.js';
import { ApiTokenEntity, type ApiTokenRole } from './api-token.entity.js';

/** pg advisory lock: one replica bootstraps the admin token at a time. */
const BOOTSTRAP_LOCK = 0x5161_0001;

@Injectable()
export class ApiTokenRepository {
  private readonly repo: Repository<ApiTokenEntity>;

  constructor(@Inject(DataSource) private readonly ds: DataSource) {
    this.repo = ds.getRepository(ApiTokenEntity);
  }

  findActiveByHash(tokenHash: Buffer): Promise<ApiTokenEntity | null> {
    return this.repo.findOneBy({ tokenHash, revokedAt: IsNull() });
  }

  async insert(t: { name: string; role: ApiTokenRole; projectId: string | null; tokenHash: Buffer }, tx?: Tx): Promise<ApiTokenEntity> {
    const repo = managerOf(this.ds, tx).getRepository(ApiTokenEntity);
    return repo.save(repo.create({ ...t, revokedAt: null }));
  }

  list(): Promise<ApiTokenEntity[]> {
    return this.repo.find({ order: { createdAt: 'ASC' } });
  }

  async revoke(id: string): Promise<boolean> {
    const r = await this.repo.update({ id, revokedAt: IsNull() }, { revokedAt: new Date() });
    return (r.affected ?? 0) > 0;
  }

  /** A transaction holding the bootstrap lock (released when it ends, or with the session). */
  bootstrapTransaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return inTransaction(this.ds, async (tx) => {
      await managerOf(this.ds, tx).query('SELECT pg_advisory_xact_lock($1)', [BOOTSTRAP_LOCK]);
      return fn(tx);
    });
  }

  existsByHash(tokenHash: Buffer, tx?: Tx): Promise<boolean> {
    return managerOf(this.ds, tx).getRepository(ApiTokenEntity).existsBy({ tokenHash });
  }

  /** Whether any admin token was ever created (revoked ones count: an admin existed). */
  adminExists(tx?: Tx): Promise<boolean> {
    return managerOf(this.ds, tx).getRepository(ApiTokenEntity).existsBy({ role: 'admin' });
  }
}
