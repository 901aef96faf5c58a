import { createHash } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { generateAgentKeyPair } from '@sigil/envelope';
import { DataSource } from 'typeorm';
import { legacyHash, recordMessage } from '../../apps/control-plane/src/audit/audit-chain.js';
import { AuditService } from '../../apps/control-plane/src/audit/audit.service.js';
import { FailedAttempts } from '../../apps/control-plane/src/audit/failed-attempts.js';
import { EnrollmentService } from '../../apps/control-plane/src/enrollment/enrollment.service.js';
import { HsmService } from '../../apps/control-plane/src/hsm/hsm.service.js';
import { startTestApp, type TestApp } from '../harness/app-context.js';
import type { StoredAuditRecord } from '../../apps/control-plane/src/audit/audit.repository.js';

// The audit chain on real PostgreSQL and SoftHSM: HMAC records under an HSM key, a MACed head,
// and what an attacker with write access to the database can and cannot do to it.

let t: TestApp;
/** The app that created the database (a restart in a test replaces `t`). */
let first: TestApp;
let audit: AuditService;
let ds: DataSource;

const event = (i: number) => ({
  at: new Date(),
  actorId: 'tok-1',
  actorName: 'ci',
  action: 'secret.update',
  method: 'PUT',
  path: `/api/v1/projects/p/apps/a/secrets/s${i}`,
  target: `secret=s${i}`,
  outcome: 'success' as const,
  status: 200,
  requestId: `req-${i}`,
});

type Row = StoredAuditRecord;
const rows = () =>
  ds.query<Row[]>(
    `SELECT seq::text AS seq, scheme, at, actor_id AS "actorId", actor_name AS "actorName", action, method, path, target,
            project_id AS "projectId", outcome, status, request_id AS "requestId", prev_hash AS "prevHash", hash
       FROM audit_events ORDER BY audit_events.seq`, // the column, not the text alias
  );

beforeAll(async () => {
  t = first = await startTestApp({ roles: ['http'] });
  audit = t.app.get(AuditService);
  ds = t.app.get(DataSource);
  for (let i = 0; i < 6; i++) await audit.record(event(i));
  await ds.query('CREATE TABLE audit_events_saved AS SELECT * FROM audit_events');
  await ds.query('CREATE TABLE audit_head_saved AS SELECT * FROM audit_head');
});

// Each scenario tampers with a copy of the same clean log.
beforeEach(async () => {
  await ds.query('DELETE FROM audit_events');
  await ds.query('INSERT INTO audit_events SELECT * FROM audit_events_saved');
  await ds.query('DELETE FROM audit_head');
  await ds.query('INSERT INTO audit_head SELECT * FROM audit_head_saved');
});

afterAll(async () => {
  await t?.close();
  await first?.dispose();
});

describe('audit chain keyed in the HSM', () => {
  it('a clean log verifies, and the result carries the MACed head', async () => {
    const v = await audit.verify();
    expect(v).toMatchObject({ ok: true, checked: 6, legacy: 0 });
    const last = (await rows()).at(-1)!;
    expect(v.head).toMatchObject({ count: '6', lastSeq: last.seq, lastHash: last.hash.toString('hex') });
    expect(v.head.mac).toMatch(/^[0-9a-f]{64}$/);
    expect((await rows()).every((r) => r.scheme === 2)).toBe(true);
  });

  it('concurrent appends are MACed a batch per HSM call, and the chain still verifies record by record', async () => {
    const hsm = t.app.get(HsmService);
    const calls: number[] = [];
    const original = hsm.auditAppendBatch.bind(hsm);
    hsm.auditAppendBatch = (task) => {
      calls.push(task.records.length);
      return original(task);
    };
    try {
      await Promise.all(Array.from({ length: 300 }, (_, i) => audit.record(event(1000 + i))));
    } finally {
      hsm.auditAppendBatch = original;
    }
    expect(calls.reduce((a, b) => a + b, 0)).toBe(300);
    expect(Math.max(...calls)).toBeGreaterThan(1); // batched: fewer HSM calls than records
    const v = await audit.verify();
    expect(v).toMatchObject({ ok: true, checked: 306 });
    // Each record links to the MAC before it, across batch boundaries too; and each MAC is checked on its own.
    const all = await rows();
    expect(all).toHaveLength(306);
    for (let i = 1; i < all.length; i++) expect(all[i]!.prevHash.equals(all[i - 1]!.hash)).toBe(true);
    const edited = all[150]!;
    await ds.query(`UPDATE audit_events SET target = 'secret=other' WHERE seq = $1`, [edited.seq]);
    expect(await audit.verify()).toMatchObject({ ok: false, code: 'mac_mismatch', brokenAt: edited.seq });
  });

  it('detects the newest records being deleted (truncation)', async () => {
    const all = await rows();
    await ds.query('DELETE FROM audit_events WHERE seq >= $1', [all[4]!.seq]);
    expect(await audit.verify()).toMatchObject({ ok: false, checked: 4, code: 'head_mismatch' });
  });

  it('detects truncation even when the anchor is edited to match, and later appends do not launder it', async () => {
    const all = await rows();
    await ds.query('DELETE FROM audit_events WHERE seq >= $1', [all[4]!.seq]);
    await ds.query('UPDATE audit_head SET count = 4, last_seq = $1, last_hash = $2', [all[3]!.seq, all[3]!.hash]);
    expect(await audit.verify()).toMatchObject({ ok: false, checked: 4, code: 'head_mac_invalid' });
    await audit.record(event(99)); // the next append sees a head the HSM did not MAC
    const after = await audit.verify();
    expect(after).toMatchObject({ ok: false, checked: 5, code: 'head_mac_invalid' });
    expect(after.head.mac).toBeNull();
  });

  it('detects one edited field (MAC mismatch at that record)', async () => {
    const all = await rows();
    await ds.query(`UPDATE audit_events SET actor_name = 'someone-else' WHERE seq = $1`, [all[2]!.seq]);
    expect(await audit.verify()).toMatchObject({ ok: false, checked: 2, code: 'mac_mismatch', brokenAt: all[2]!.seq });
  });

  it('detects a rewrite whose chain was recomputed without the HSM (unkeyed SHA-256, as the old scheme was)', async () => {
    const all = await rows();
    // The attacker rewrites record 2 and recomputes every hash after it, and the head, with SHA-256.
    let prev = all[1]!.hash;
    for (const r of all.slice(2)) {
      const edited = { ...r, at: new Date(r.at), actorName: r.seq === all[2]!.seq ? 'someone-else' : r.actorName };
      const hash = createHash('sha256')
        .update(recordMessage(r.seq, prev, edited))
        .digest();
      await ds.query('UPDATE audit_events SET actor_name = $1, prev_hash = $2, hash = $3 WHERE seq = $4', [
        edited.actorName,
        prev,
        hash,
        r.seq,
      ]);
      prev = hash;
    }
    await ds.query('UPDATE audit_head SET last_hash = $1', [prev]);
    expect(await audit.verify()).toMatchObject({ ok: false, checked: 2, code: 'mac_mismatch', brokenAt: all[2]!.seq });

    // Or declares the whole log legacy (scheme 1) and recomputes that chain: the anchor gives it away.
    prev = Buffer.alloc(32);
    for (const r of all) {
      const hash = legacyHash(prev, { ...r, at: new Date(r.at), actorName: r.seq === all[2]!.seq ? 'someone-else' : r.actorName });
      await ds.query('UPDATE audit_events SET scheme = 1, prev_hash = $1, hash = $2 WHERE seq = $3', [prev, hash, r.seq]);
      prev = hash;
    }
    await ds.query('UPDATE audit_head SET last_hash = $1', [prev]);
    expect(await audit.verify()).toMatchObject({ ok: false, checked: 6, legacy: 6, code: 'head_mac_invalid' });
  });

  it('detects a record removed from the middle', async () => {
    const all = await rows();
    await ds.query('DELETE FROM audit_events WHERE seq = $1', [all[3]!.seq]);
    expect(await audit.verify()).toMatchObject({ ok: false, checked: 3, code: 'link_mismatch', brokenAt: all[4]!.seq });
  });

  it('migration path: rows of the legacy scheme are anchored once at the cut-over, then extended with HMAC records', async () => {
    // The state the migration leaves: legacy rows and a head describing them, not yet MACed.
    await ds.query('DELETE FROM audit_events');
    let prev: Buffer = Buffer.alloc(32);
    for (let i = 1; i <= 3; i++) {
      const e = { ...event(i), projectId: null };
      const hash = legacyHash(prev, e);
      await ds.query(
        `INSERT INTO audit_events (seq, scheme, at, actor_id, actor_name, action, method, path, target, project_id, outcome, status, request_id, prev_hash, hash)
         VALUES ($1, 1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $10, $11, $12, $13)`,
        [i, e.at, e.actorId, e.actorName, e.action, e.method, e.path, e.target, e.outcome, e.status, e.requestId, prev, hash],
      );
      prev = hash;
    }
    await ds.query(`UPDATE audit_head SET count = 3, last_seq = 3, last_hash = $1, at = date_trunc('milliseconds', now()), mac = NULL`, [
      prev,
    ]);
    await t.close();
    t = await startTestApp({ roles: ['http'], reuse: t }); // the first start after the migration anchors it
    audit = t.app.get(AuditService);
    ds = t.app.get(DataSource);
    expect(await audit.verify()).toMatchObject({ ok: true, checked: 3, legacy: 3 });
    await audit.record(event(4));
    expect(await audit.verify()).toMatchObject({ ok: true, checked: 4, legacy: 3 });
    // The legacy prefix is pinned by the HMAC record after it: rewriting it is detected.
    await ds.query(`UPDATE audit_events SET actor_name = 'x' WHERE seq = 2`);
    expect(await audit.verify()).toMatchObject({ ok: false, code: 'legacy_hash_mismatch', brokenAt: '2' });
  });
});

describe('failed unauthenticated attempts', () => {
  it('a flood of refused enrollments from many addresses becomes one audit record with the right counts', async () => {
    const enrollment = t.app.get(EnrollmentService);
    const failed = t.app.get(FailedAttempts);
    await failed.flush();
    const before = (await rows()).length;
    const key = generateAgentKeyPair().publicKeyDer;
    const n = 300;
    const outcomes = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        enrollment
          .enroll({
            cluster: 'no-such-cluster',
            credential: { bootstrapToken: `sge_${'A'.repeat(43)}` },
            csrDer: Buffer.from('csr'),
            deliveryPublicKeyDer: key,
            agentVersion: 'flood/1',
            // 250 addresses once each, one address 50 times
            peer: i < 250 ? `10.9.${i >> 8}.${i & 255}` : '192.0.2.7',
          })
          .then(
            () => 'enrolled',
            (err: { code?: string }) => err.code,
          ),
      ),
    );
    expect(outcomes.every((o) => o === 'enrollment_token_invalid')).toBe(true);
    expect((await rows()).length).toBe(before); // nothing written per attempt
    await failed.flush();
    const added = (await rows()).slice(before);
    expect(added).toHaveLength(1);
    expect(added[0]).toMatchObject({ action: 'cluster.enroll', outcome: 'denied', status: 401, actorId: null });
    expect(added[0]!.target).toMatch(/^count=300 /);
    expect(added[0]!.target).toContain('sources=192.0.2.7*50,'); // the heavy source stays named
    const named = [...added[0]!.target!.matchAll(/\*(\d+)/g)].reduce((s, m) => s + Number(m[1]), 0);
    const other = Number(/ other=(\d+)$/.exec(added[0]!.target!)?.[1] ?? 0);
    expect(named + other).toBe(n);
    expect(await audit.verify()).toMatchObject({ ok: true });
  });
});
