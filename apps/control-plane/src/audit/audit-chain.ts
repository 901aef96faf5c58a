import { createHash } from 'node:crypto';
import type { AuditHead, AuditRecord } from './audit.repository.js';

/**
 * The bytes the audit chain MACs (docs/crypto.md, "Audit log", says how to check them by hand).
 * Each is the UTF-8 of a JSON array (ECMAScript JSON.stringify: no whitespace); 64-bit numbers
 * (seq, count) are decimal strings so every JSON reader sees the same value.
 */

export const GENESIS = Buffer.alloc(32);

const fields = (r: AuditRecord) => [
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
];

/** Scheme 2: HMAC-SHA256(audit key, this) is the record's `hash`. */
export function recordMessage(seq: string, prev: Buffer, r: AuditRecord): Buffer {
  return Buffer.from(JSON.stringify(['sigil/audit/v2', seq, prev.toString('hex'), ...fields(r)]), 'utf8');
}

/**
 * recordMessage split around the previous MAC: `before ‖ hex(prev) ‖ after`, so the HSM worker
 * can chain a whole batch (each record's prev is the MAC it just computed) in one call. A hex
 * string needs no JSON escaping, so the concatenation is exactly recordMessage's bytes.
 */
export function recordMessageParts(seq: string, r: AuditRecord): { before: Buffer; after: Buffer } {
  const head = JSON.stringify(['sigil/audit/v2', seq]); // ["sigil/audit/v2","<seq>"]
  const tail = JSON.stringify(fields(r)); // [<fields>]
  return { before: Buffer.from(`${head.slice(0, -1)},"`, 'utf8'), after: Buffer.from(`",${tail.slice(1)}`, 'utf8') };
}

/** The head's MAC covers this prefix followed by the raw 32-byte last hash. */
export function headPrefix(count: string, lastSeq: string, at: Date): Buffer {
  return Buffer.from(JSON.stringify(['sigil/audit-head/v1', count, lastSeq, at.toISOString()]), 'utf8');
}

export function headMessage(head: Pick<AuditHead, 'count' | 'lastSeq' | 'at' | 'lastHash'>): Buffer {
  return Buffer.concat([headPrefix(head.count, head.lastSeq, head.at), head.lastHash]);
}

/** Scheme 1 (rows written before the HMAC cut-over): SHA-256(prev ‖ JSON of the fields), unkeyed. */
export function legacyHash(prev: Buffer, r: AuditRecord): Buffer {
  return createHash('sha256')
    .update(prev)
    .update(JSON.stringify(fields(r)), 'utf8')
    .digest();
}
