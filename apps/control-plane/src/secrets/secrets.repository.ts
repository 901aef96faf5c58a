import { Inject, Injectable } from '@nestjs/common';
import { DataSource, MoreThan, type FindOptionsWhere } from 'typeorm';
import { managerOf, type Tx } from '../database/transaction.js';
import { SecretEntity, SecretVersionEntity } from './secret.entity.js';

@Injectable()
export class SecretsRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  private em(tx: Tx | undefined) {
    return managerOf(this.ds, tx);
  }

  findByName(appId: string, name: string, tx?: Tx): Promise<SecretEntity | null> {
    return this.em(tx).getRepository(SecretEntity).findOneBy({ appId, name });
  }

  /** Locks the secret row for a new version or a rollback. */
  /**
   * FOR NO KEY UPDATE: serialises writers of the secret without blocking rows that merely
   * reference it (a delivery job writing cluster_secrets takes FOR KEY SHARE on it).
   */
  lockByName(tx: Tx, appId: string, name: string): Promise<SecretEntity | null> {
    return this.em(tx)
      .getRepository(SecretEntity)
      .findOne({ where: { appId, name }, lock: { mode: 'for_no_key_update' } });
  }

  list(appId: string, after: string | undefined, limit: number): Promise<SecretEntity[]> {
    const where: FindOptionsWhere<SecretEntity> = { appId };
    if (after !== undefined) where.name = MoreThan(after);
    return this.ds.getRepository(SecretEntity).find({ where, order: { name: 'ASC' }, take: limit });
  }

  listAllNames(appId: string): Promise<Array<Pick<SecretEntity, 'name'>>> {
    return this.ds.getRepository(SecretEntity).find({ where: { appId }, select: { name: true }, order: { name: 'ASC' } });
  }

  saveSecret(tx: Tx, s: Partial<SecretEntity>): Promise<SecretEntity> {
    const repo = this.em(tx).getRepository(SecretEntity);
    return repo.save(repo.create(s));
  }

  insertVersion(tx: Tx, v: Omit<SecretVersionEntity, 'id' | 'createdAt'>): Promise<SecretVersionEntity> {
    const repo = this.em(tx).getRepository(SecretVersionEntity);
    return repo.save(repo.create(v));
  }

  findVersion(secretId: string, version: number, tx?: Tx): Promise<SecretVersionEntity | null> {
    return this.em(tx).getRepository(SecretVersionEntity).findOneBy({ secretId, version });
  }

  /** Current version of each secret, in one query (for listings). */
  async currentVersions(secrets: SecretEntity[]): Promise<Map<string, SecretVersionEntity>> {
    if (secrets.length === 0) return new Map();
    const rows = await this.ds
      .getRepository(SecretVersionEntity)
      .createQueryBuilder('v')
      .innerJoin(SecretEntity, 's', 's.id = v.secret_id AND s.current_version = v.version')
      .where('v.secret_id IN (:...ids)', { ids: secrets.map((s) => s.id) })
      .getMany();
    return new Map(rows.map((r) => [r.secretId, r]));
  }

  versions(secretId: string): Promise<SecretVersionEntity[]> {
    return this.ds.getRepository(SecretVersionEntity).find({ where: { secretId }, order: { version: 'DESC' } });
  }

  async delete(tx: Tx, id: string): Promise<void> {
    await this.em(tx).getRepository(SecretEntity).delete({ id });
  }
}
