import { Inject, Injectable } from '@nestjs/common';
import { DataSource, MoreThan, type EntityManager, type FindOptionsWhere } from 'typeorm';
import { SecretEntity, SecretVersionEntity } from './secret.entity.js';

@Injectable()
export class SecretsRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  transaction<T>(fn: (em: EntityManager) => Promise<T>): Promise<T> {
    return this.ds.transaction(fn);
  }

  findByName(appId: string, name: string, em: EntityManager = this.ds.manager): Promise<SecretEntity | null> {
    return em.getRepository(SecretEntity).findOneBy({ appId, name });
  }

  /** Locks the secret row for a new version or a rollback. */
  /**
   * FOR NO KEY UPDATE: serialises writers of the secret without blocking rows that merely
   * reference it (a delivery job writing cluster_secrets takes FOR KEY SHARE on it).
   */
  lockByName(em: EntityManager, appId: string, name: string): Promise<SecretEntity | null> {
    return em.getRepository(SecretEntity).findOne({ where: { appId, name }, lock: { mode: 'for_no_key_update' } });
  }

  list(appId: string, after: string | undefined, limit: number): Promise<SecretEntity[]> {
    const where: FindOptionsWhere<SecretEntity> = { appId };
    if (after !== undefined) where.name = MoreThan(after);
    return this.ds.getRepository(SecretEntity).find({ where, order: { name: 'ASC' }, take: limit });
  }

  listAllNames(appId: string): Promise<Array<Pick<SecretEntity, 'name'>>> {
    return this.ds.getRepository(SecretEntity).find({ where: { appId }, select: { name: true }, order: { name: 'ASC' } });
  }

  saveSecret(em: EntityManager, s: Partial<SecretEntity>): Promise<SecretEntity> {
    const repo = em.getRepository(SecretEntity);
    return repo.save(repo.create(s));
  }

  insertVersion(em: EntityManager, v: Omit<SecretVersionEntity, 'id' | 'createdAt'>): Promise<SecretVersionEntity> {
    const repo = em.getRepository(SecretVersionEntity);
    return repo.save(repo.create(v));
  }

  findVersion(secretId: string, version: number, em: EntityManager = this.ds.manager): Promise<SecretVersionEntity | null> {
    return em.getRepository(SecretVersionEntity).findOneBy({ secretId, version });
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

  async delete(em: EntityManager, id: string): Promise<void> {
    await em.getRepository(SecretEntity).delete({ id });
  }
}
