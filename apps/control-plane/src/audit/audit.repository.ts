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
  /** 1: legacy unkeyed SHA-256 chain (rows before the HMAC cut-over); 2: HMAC-SHA256 in the HSM. */
  scheme: 1 | 2;
  prevHash: Buffer;
  hash: Buffer;
}

/** The chain's anchor: how many records, which is last, and the HSM's MAC over that (null: not anchored). */
export interface AuditHead {
  count: string;
  lastSeq: string;
  lastHash: Buffer;
  at: Date;
  mac: Buffer | null;
}

const COLUMNS = `seq, scheme, at, actor_id AS "actorId", actor_name AS "actorName", action, method, path, target, project_id AS "projectId",
  outcome, status, request_id AS "requestId", prev_hash AS "prevHash", hash`;
const HEAD_COLUMNS = `count::text AS count, last_seq::text AS "lastSeq", last_hash AS "lastHash", at, mac`;

/**
 * Computes the records' chained MACs and the new head's MAC (in the HSM) from what the locked
 * head says: `seqs[i]` is records[i]'s sequence number, `at` the new head's time.
 */
export type AuditSealer = (
  records: AuditRecord[],
  seqs: string[],
  head: AuditHead,
  at: Date,
) => Promise<{ macs: Buffer[]; headMac: Buffer | null }>;

@Injectable()
export class AuditRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  /**
   * Appends `records`, in order, under the head row's lock (one writer at a time, across
   * replicas): each record links to the previous one's MAC, and the head moves in the same
   * transaction, so the two never disagree. Sequence numbers are taken after the lock, so seq
   * order is chain order. One transaction for many records: concurrent writers share a commit
   * and a pooled connection instead of each holding one while they queue for the lock.
   */
  async append(records: AuditRecord[], seal: AuditSealer): Promise<void> {
    if (records.length === 0) return;
    await this.ds.transaction(async (em) => {
      const [locked] = await em.query<AuditHead[]>(`SELECT ${HEAD_COLUMNS} FROM audit_head WHERE id = 1 FOR UPDATE`);
      if (!locked) throw new Error('audit_head is missing');
      const seqs = await em.query<Array<{ seq: string }>>(
        `SELECT nextval(pg_get_serial_sequence('audit_events', 'seq'))::text AS seq FROM generate_series(1, $1)`,
        [records.length],
      );
      const seqList = seqs.map((r) => r.seq);
      const at = new Date();
      const { macs, headMac } = await seal(records, seqList, locked, at);
      if (macs.length !== records.length) throw new Error('audit sealer returned the wrong number of MACs');
      const prevs = [locked.lastHash, ...macs.slice(0, -1)];
      const head: AuditHead = {
        count: (BigInt(locked.count) + BigInt(records.length)).toString(),
        lastSeq: seqList.at(-1)!,
        lastHash: macs.at(-1)!,
        at,
        mac: headMac,
      };
      const col = <K extends keyof AuditRecord>(k: K) => records.map((r) => r[k]);
      await em.query(
        `INSERT INTO audit_events (seq, scheme, at, actor_id, actor_name, action, method, path, target, project_id, outcome, status, request_id, prev_hash, hash)
         SELECT * FROM unnest($1::bigint[], $2::int[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                              $9::text[], $10::uuid[], $11::text[], $12::int[], $13::text[], $14::bytea[], $15::bytea[])`,
        [
          seqList,
          records.map(() => 2),
          col('at'),
          col('actorId'),
          col('actorName'),
          col('action'),
          col('method'),
          col('path'),
          col('target'),
          col('projectId'),
          col('outcome'),
          col('status'),
          col('requestId'),
          prevs,
          macs,
        ],
      );
      await em.query('UPDATE audit_head SET count = $1, last_seq = $2, last_hash = $3, at = $4, mac = $5 WHERE id = 1', [
        head.count,
        head.lastSeq,
        head.lastHash,
        head.at,
        head.mac,
      ]);
    });
  }

  async head(): Promise<AuditHead> {
    const [head] = await this.ds.query<AuditHead[]>(`SELECT ${HEAD_COLUMNS} FROM audit_head WHERE id = 1`);
    if (!head) throw new Error('audit_head is missing');
    return head;
  }

  /**
   * At the cut-over (head never MACed and no HMAC record yet): lets `anchor` MAC the head over
   * the legacy chain, under the head lock. Once any HMAC record exists, a missing MAC is never
   * filled in again: it would re-anchor a log that may have been cut.
   */
  async anchorLegacy(anchor: (head: AuditHead) => Promise<Buffer>): Promise<boolean> {
    return this.ds.transaction(async (em) => {
      const [head] = await em.query<AuditHead[]>(`SELECT ${HEAD_COLUMNS} FROM audit_head WHERE id = 1 FOR UPDATE`);
      if (!head || head.mac !== null) return false;
      const [keyed] = await em.query<Array<{ hmac: boolean }>>('SELECT EXISTS (SELECT 1 FROM audit_events WHERE scheme = 2) AS hmac');
      if (keyed?.hmac) return false;
      await em.query('UPDATE audit_head SET mac = $1 WHERE id = 1', [await anchor(head)]);
      return true;
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

  /** In chain order, after `afterSeq` and up to `lastSeq` (the head's), so later appends do not race a verification. */
  async batch(afterSeq: string, lastSeq: string, limit: number): Promise<StoredAuditRecord[]> {
    return this.ds.query<StoredAuditRecord[]>(`SELECT ${COLUMNS} FROM audit_events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3`, [
      afterSeq,
      lastSeq,
      limit,
    ]);
  }

  async projectIdByName(name: string): Promise<string | null> {
    const rows = await this.ds.query<Array<{ id: string }>>('SELECT id FROM projects WHERE name = $1', [name]);
    return rows[0]?.id ?? null;
  }
}
