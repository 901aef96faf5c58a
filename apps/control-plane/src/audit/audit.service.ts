import { createHash } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { AuditRepository, type AuditRecord, type StoredAuditRecord } from './audit.repository.js';

export interface ChainVerification {
  ok: boolean;
  checked: number;
  /** The first record whose hash or link does not match, if any. */
  brokenAt?: string;
  reason?: string;
}

/**
 * A tamper-evident log: each record's hash covers its content and the previous record's hash,
 * so editing or deleting a stored record breaks every later link. Records never contain values.
 */
@Injectable()
export class AuditService {
  constructor(@Inject(AuditRepository) private readonly repo: AuditRepository) {}

  static hash(prev: Buffer, r: AuditRecord): Buffer {
    const canonical = JSON.stringify([
      r.at.toISOString(),
      r.actorId,
      r.actorName,
      r.action,
      r.method,
      r.path,
      r.target,
      r.projectId,
      r.outcome,
      r.status,
      r.requestId,
    ]);
    return createHash('sha256').update(prev).update(canonical, 'utf8').digest();
  }

  async record(r: Omit<AuditRecord, 'projectId'> & { projectName?: string }): Promise<void> {
    const projectId = r.projectName ? await this.repo.projectIdByName(r.projectName) : null;
    const { projectName: _unused, ...rest } = r;
    await this.repo.append({ ...rest, projectId }, (prev, rec) => AuditService.hash(prev, rec));
  }

  list(filter: Parameters<AuditRepository['list']>[0], limit: number): Promise<StoredAuditRecord[]> {
    return this.repo.list(filter, limit);
  }

  async verify(): Promise<ChainVerification> {
    let prev: Buffer = Buffer.alloc(32);
    let after = '0';
    let checked = 0;
    for (;;) {
      const rows = await this.repo.batch(after, 1000);
      for (const row of rows) {
        if (!row.prevHash.equals(prev))
          return {
            ok: false,
            checked,
            brokenAt: row.seq,
            reason: 'link to the previous record does not match (a record was removed or altered)',
          };
        if (!AuditService.hash(prev, { ...row, at: new Date(row.at) }).equals(row.hash))
          return { ok: false, checked, brokenAt: row.seq, reason: 'record content does not match its hash' };
        prev = row.hash;
        checked += 1;
      }
      if (rows.length < 1000) return { ok: true, checked };
      after = rows[rows.length - 1]!.seq;
    }
  }
}
