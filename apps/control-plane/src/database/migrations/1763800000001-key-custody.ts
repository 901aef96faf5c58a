import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Key custody: which root-key versions exist (the keys themselves live only in the HSM),
 * sealed values (ciphertext + wrapped data key; never a value or an unwrapped key),
 * per-cluster delivery keys (wrapped) and the progress of root-key rotations.
 */
export class KeyCustody1763800000001 implements MigrationInterface {
  name = 'KeyCustody1763800000001';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE root_keys (
        version       integer PRIMARY KEY CHECK (version > 0),
        state         text NOT NULL CHECK (state IN ('active', 'retired', 'destroyed')),
        created_at    timestamptz NOT NULL DEFAULT now(),
        retired_at    timestamptz NULL,
        destroyed_at  timestamptz NULL
      )`);
    await q.query(`CREATE UNIQUE INDEX root_keys_one_active ON root_keys ((state)) WHERE state = 'active'`);
    await q.query(`
      CREATE TABLE sealed_values (
        id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        root_key_version  integer NOT NULL REFERENCES root_keys (version),
        wrapped_dek       bytea NOT NULL,
        iv                bytea NOT NULL CHECK (octet_length(iv) = 12),
        ciphertext        bytea NOT NULL,
        created_at        timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query('CREATE INDEX sealed_values_root_key_version ON sealed_values (root_key_version)');
    await q.query(`
      CREATE TABLE cluster_keys (
        id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        cluster_id        uuid NOT NULL,
        version           integer NOT NULL CHECK (version > 0),
        state             text NOT NULL CHECK (state IN ('active', 'retired')),
        root_key_version  integer NOT NULL REFERENCES root_keys (version),
        wrapped_key       bytea NOT NULL,
        agent_public_key  bytea NOT NULL,
        agent_envelope    bytea NOT NULL,
        created_at        timestamptz NOT NULL DEFAULT now(),
        UNIQUE (cluster_id, version)
      )`);
    await q.query(`CREATE UNIQUE INDEX cluster_keys_one_active ON cluster_keys (cluster_id) WHERE state = 'active'`);
    await q.query('CREATE INDEX cluster_keys_root_key_version ON cluster_keys (root_key_version)');
    await q.query(`
      CREATE TABLE root_key_rotations (
        id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        from_version  integer NOT NULL REFERENCES root_keys (version),
        to_version    integer NOT NULL REFERENCES root_keys (version),
        state         text NOT NULL CHECK (state IN ('running', 'completed', 'failed')),
        total         integer NOT NULL,
        done          integer NOT NULL DEFAULT 0,
        error         text NULL,
        started_at    timestamptz NOT NULL DEFAULT now(),
        finished_at   timestamptz NULL
      )`);
    await q.query(`CREATE UNIQUE INDEX root_key_rotations_one_running ON root_key_rotations ((state)) WHERE state = 'running'`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE root_key_rotations');
    await q.query('DROP TABLE cluster_keys');
    await q.query('DROP TABLE sealed_values');
    await q.query('DROP TABLE root_keys');
  }
}
