import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';

export interface AuditRecord {
  at: Date;
  actorId: string | null;
  actorName: string | null;
  action: string;
  method: string;
  path: string;
  target: string | null;
  projectId: string | null;
  /** attempted: written before an authorised mutation runs; the outcome record follows. */
  outcome: 'attempted' | 'success' | 'denied' | 'failed';
  status: number;
  requestId: string | null;
}

export interface StoredAuditRecord extends AuditRecord {
  seq: string;
  prevHash: Buffer;
  hash: Buffer;
}

const COLUMNS = `seq, at, actor_id AS "actorId", actor_name AS "actorName", action, method, path, target, project_id AS "projectId",
  outcome, status, request_id AS "requestId", prev_hash AS "prevHash", hash`;
const AUDIT_LOCK = 0x5161_0003;

@Injectable()
export class AuditRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  /** Appends under a lock, so each record's prev_hash is the hash of the one before it. */
  async append(record: AuditRecord, hashOf: (prev: Buffer, r: AuditRecord) => Buffer): Promise<void> {
    await this.ds.transaction(async (em) => {
      await em.query('SELECT pg_advisory_xact_lock($1)', [AUDIT_LOCK]);
      const last = await em.query<Array<{ hash: Buffer }>>('SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1');
      const prev = last[0]?.hash ?? Buffer.alloc(32);
      await em.query(
        `INSERT INTO audit_events (at, actor_id, actor_name, action, method, path, target, project_id, outcome, status, request_id, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
        [
          record.at,
          record.actorId,
          record.actorName,
          record.action,
          record.method,
          record.path,
          record.target,
          record.projectId,
          record.outcome,
          record.status,
          record.requestId,
          prev,
          hashOf(prev, record),
        ],
      );
    });
  }

  async list(
    filter: { projectId?: string | null; action?: string; outcome?: string; before?: string },
    limit: number,
  ): Promise<StoredAuditRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: string, v: unknown) => {
      params.push(v);
      where.push(sql.replace('?', `$${params.length}`));
    };
    if (filter.projectId) add('project_id = ?', filter.projectId);
    if (filter.action) add('action = ?', filter.action);
    if (filter.outcome) add('outcome = ?', filter.outcome);
    if (filter.before) add('seq < ?', filter.before);
    params.push(limit);
    return this.ds.query<StoredAuditRecord[]>(
      `SELECT ${COLUMNS} FROM audit_events ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT $${params.length}`,
      params,
    );
  }

  /** In chain order, from `afterSeq`. */
  async batch(afterSeq: string, limit: number): Promise<StoredAuditRecord[]> {
    return this.ds.query<StoredAuditRecord[]>(`SELECT ${COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2`, [
      afterSeq,
      limit,
    ]);
  }

  async projectIdByName(name: string): Promise<string | null> {
    const rows = await this.ds.query<Array<{ id: string }>>('SELECT id FROM projects WHERE name = $1', [name]);
    return rows[0]?.id ?? null;
  }
}
