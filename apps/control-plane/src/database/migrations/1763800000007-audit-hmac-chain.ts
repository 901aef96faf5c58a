import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The audit log becomes an HMAC chain keyed in the HSM, anchored by a MACed head.
 *
 * Rows written before this migration keep scheme 1 (the unkeyed SHA-256 chain) and are
 * verified under it; every later row is scheme 2 and its prev_hash links to the last scheme-1
 * hash. The head row created here describes the legacy chain with no MAC yet; the first start
 * after the migration MACs it in the HSM (only while no scheme-2 row exists), which pins the
 * legacy prefix from then on. No row is rewritten. See docs/crypto.md, "Audit log".
 */
export class AuditHmacChain1763800000007 implements MigrationInterface {
  name = 'AuditHmacChain1763800000007';

  async up(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE audit_events ADD COLUMN scheme smallint NOT NULL DEFAULT 1 CHECK (scheme IN (1, 2))');
    // Writers must say which scheme they used: an old replica's insert now fails instead of extending the chain unkeyed.
    await q.query('ALTER TABLE audit_events ALTER COLUMN scheme DROP DEFAULT');
    await q.query(`
      CREATE TABLE audit_head (
        id         smallint PRIMARY KEY CHECK (id = 1),
        count      bigint NOT NULL CHECK (count >= 0),
        last_seq   bigint NOT NULL,
        last_hash  bytea NOT NULL,
        at         timestamptz NOT NULL,
        mac        bytea NULL
      )`);
    await q.query(`
      INSERT INTO audit_head (id, count, last_seq, last_hash, at, mac)
      SELECT 1, count(*), coalesce(max(seq), 0),
             coalesce((SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1), '\\x${'00'.repeat(32)}'::bytea),
             date_trunc('milliseconds', now()), NULL
        FROM audit_events`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE audit_head');
    await q.query('ALTER TABLE audit_events DROP COLUMN scheme');
  }
}
