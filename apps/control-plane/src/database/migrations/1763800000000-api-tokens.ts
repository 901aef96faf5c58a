import type { MigrationInterface, QueryRunner } from 'typeorm';

export class ApiTokens1763800000000 implements MigrationInterface {
  name = 'ApiTokens1763800000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE api_tokens (
        id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        name        text NOT NULL,
        role        text NOT NULL CHECK (role IN ('admin', 'operator', 'pipeline', 'viewer')),
        project_id  uuid NULL,
        token_hash  bytea NOT NULL UNIQUE,
        created_at  timestamptz NOT NULL DEFAULT now(),
        revoked_at  timestamptz NULL
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE api_tokens');
  }
}
