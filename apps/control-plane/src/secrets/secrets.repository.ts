import { Inject, Injectable } from '@nestjs/common';
import { DataSource, MoreThan, Raw, type FindOptionsWhere } from 'typeorm';
import { managerOf, type Tx } from '../database/transaction.js';
import { SecretEntity, SecretVersionEntity } from './secret.entity.js';

export interface DueRotation {
  id: string;
  appId: string;
  project: string;
  app: string;
  name: string;
}

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

  /**
   * Scheduled secrets that are due, oldest due first, with the names the service resolves them
   * by. Across projects on purpose (the system's sweep); ids and names only. Not locked: each is
   * claimed in its own rotation transaction (claimDue).
   */
  dueRotations(limit: number): Promise<DueRotation[]> {
    return this.ds.query(
      `SELECT s.id, s.app_id AS "appId", p.name AS project, a.name AS app, s.name
         FROM secrets s JOIN apps a ON a.id = s.app_id JOIN projects p ON p.id = s.project_id
        WHERE s.next_rotation_at <= now()
        ORDER BY s.next_rotation_at
        LIMIT $1`,
      [limit],
    );
  }

  /**
   * A scheduled rotation that failed is tried again `seconds` from now, not at the next sweep:
   * a secret that keeps failing cannot hold back the ones due after it (the sweep reads the
   * oldest due first). Only if it is still due, so a rotation made meanwhile keeps its schedule.
   */
  async postponeRotation(id: string, seconds: number): Promise<void> {
    await this.ds.query(
      `UPDATE secrets SET next_rotation_at = now() + make_interval(secs => $2) WHERE id = $1 AND next_rotation_at <= now()`,
      [id, seconds],
    );
  }

  /**
   * The due secret, locked for its rotation — or null when another replica's sweep (or a writer)
   * holds it (SKIP LOCKED: nobody waits), or when it is no longer due (rotated meanwhile: the
   * row read after the lock is the committed one). So two sweeps never rotate one secret twice.
   */
  claimDue(tx: Tx, id: string): Promise<SecretEntity | null> {
    return this.em(tx)
      .getRepository(SecretEntity)
      .findOne({
        where: { id, nextRotationAt: Raw((c) => `${c} <= now()`) },
        lock: { mode: 'for_no_key_update', onLocked: 'skip_locked' },
      });
  }

  /**
   * After new generated values: last rotated now, next due `rotate_every_days` "days" of
   * `daySeconds` later (the database's clock, the same for every replica).
   */
  async markRotated(
    tx: Tx,
    id: string,
    daySeconds: number,
    /** a new secret's schedule, set in the same statement (the row's check constraint ties the two columns) */
    days?: number,
  ): Promise<Pick<SecretEntity, 'nextRotationAt' | 'lastRotatedAt' | 'rotateEveryDays'>> {
    const rows = await this.em(tx).query<[Array<Pick<SecretEntity, 'nextRotationAt' | 'lastRotatedAt' | 'rotateEveryDays'>>, number]>(
      `UPDATE secrets SET last_rotated_at = now(), rotate_every_days = COALESCE($3::integer, rotate_every_days),
              next_rotation_at = now() + make_interval(secs => COALESCE($3::integer, rotate_every_days)::double precision * $2)
        WHERE id = $1
        RETURNING next_rotation_at AS "nextRotationAt", last_rotated_at AS "lastRotatedAt", rotate_every_days AS "rotateEveryDays"`,
      [id, daySeconds, days ?? null],
    );
    return rows[0][0]!;
  }

  /**
   * A new schedule (or none): due `days` "days" after the last rotation (so shortening an overdue
   * schedule rotates at the next sweep). Bumps the row version (ETag).
   */
  async setSchedule(tx: Tx, id: string, days: number | null, daySeconds: number): Promise<void> {
    await this.em(tx).query(
      `UPDATE secrets SET rotate_every_days = $2::integer, version = version + 1, updated_at = now(),
              next_rotation_at = CASE WHEN $2::integer IS NULL THEN NULL
                ELSE COALESCE(last_rotated_at, created_at) + make_interval(secs => $2::integer::double precision * $3) END
        WHERE id = $1`,
      [id, days, daySeconds],
    );
  }

  async delete(tx: Tx, id: string): Promise<void> {
    await this.em(tx).getRepository(SecretEntity).delete({ id });
  }
}
