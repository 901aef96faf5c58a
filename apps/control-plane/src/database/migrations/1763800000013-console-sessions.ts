import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Console sessions (docs/console.md, decision 021): a browser signs in with an API token once
 * and then holds a session cookie. Only the SHA-256 of the cookie's secret is stored; the CSRF
 * token is stored as is (alone it opens nothing). A session ends with its token (revoked or
 * deleted), at its absolute expiry, after its idle timeout, or at sign-out.
 */
export class ConsoleSessions1763800000013 implements MigrationInterface {
  name = 'ConsoleSessions1763800000013';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE console_sessions (
        id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        token_id      uuid NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
        secret_hash   bytea NOT NULL UNIQUE CHECK (octet_length(secret_hash) = 32),
        csrf_token    text NOT NULL CHECK (length(csrf_token) >= 32),
        created_at    timestamptz NOT NULL DEFAULT now(),
        last_seen_at  timestamptz NOT NULL DEFAULT now(),
        expires_at    timestamptz NOT NULL
      )`);
    await q.query('CREATE INDEX console_sessions_token ON console_sessions (token_id)');
    await q.query('CREATE INDEX console_sessions_expires ON console_sessions (expires_at)');
    await q.query('CREATE INDEX console_sessions_last_seen ON console_sessions (last_seen_at)');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE console_sessions');
  }
}
