import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Generated static secrets with a rotation schedule (issue 20, docs/generated-secrets.md): a
 * secret may carry the recipe of its values (`generator`: keys, kinds, lengths, alphabets; never
 * a value) and a schedule. `next_rotation_at` is the due time the rotation sweep picks up (FOR
 * NO KEY UPDATE SKIP LOCKED), so the truth about what is due is here, not in Redis.
 */
export class GeneratedSecrets1763800000009 implements MigrationInterface {
  name = 'GeneratedSecrets1763800000009';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `ALTER TABLE secrets ADD COLUMN generator jsonb CHECK (generator IS NULL OR jsonb_typeof(generator -> 'keys') = 'array')`,
    );
    await q.query('ALTER TABLE secrets ADD COLUMN rotate_every_days integer CHECK (rotate_every_days BETWEEN 1 AND 3650)');
    await q.query('ALTER TABLE secrets ADD COLUMN next_rotation_at timestamptz');
    await q.query('ALTER TABLE secrets ADD COLUMN last_rotated_at timestamptz');
    // A schedule only on a generated secret, and a due time exactly when there is a schedule.
    await q.query(`
      ALTER TABLE secrets ADD CONSTRAINT secrets_rotation_schedule CHECK (
        (rotate_every_days IS NULL OR generator IS NOT NULL) AND ((rotate_every_days IS NULL) = (next_rotation_at IS NULL))
      )`);
    // The sweep reads due secrets in due order; only scheduled ones are in the index.
    await q.query('CREATE INDEX secrets_next_rotation ON secrets (next_rotation_at) WHERE next_rotation_at IS NOT NULL');
  }

  async down(q: QueryRunner): Promise<void> {
    // Generated secrets stay, as typed ones with their current values (their versions are unchanged).
    await q.query('DROP INDEX secrets_next_rotation');
    await q.query('ALTER TABLE secrets DROP CONSTRAINT secrets_rotation_schedule');
    await q.query('ALTER TABLE secrets DROP COLUMN last_rotated_at');
    await q.query('ALTER TABLE secrets DROP COLUMN next_rotation_at');
    await q.query('ALTER TABLE secrets DROP COLUMN rotate_every_days');
    await q.query('ALTER TABLE secrets DROP COLUMN generator');
  }
}
