import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Projects, apps, secrets with immutable versions, clusters, enrollment tokens, audit log. */
export class OperatorApi1763800000002 implements MigrationInterface {
  name = 'OperatorApi1763800000002';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE projects (
        id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        name         text NOT NULL UNIQUE,
        description  text NOT NULL DEFAULT '',
        created_at   timestamptz NOT NULL DEFAULT now(),
        updated_at   timestamptz NOT NULL DEFAULT now(),
        version      integer NOT NULL
      )`);
    await q.query(`
      CREATE TABLE apps (
        id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        project_id     uuid NOT NULL REFERENCES projects (id) ON DELETE RESTRICT,
        name           text NOT NULL,
        namespace      text NOT NULL,
        delivery_mode  text NOT NULL CHECK (delivery_mode IN ('env', 'volume')),
        secret_type    text NOT NULL,
        mount_path     text NOT NULL,
        created_at     timestamptz NOT NULL DEFAULT now(),
        updated_at     timestamptz NOT NULL DEFAULT now(),
        version        integer NOT NULL,
        UNIQUE (project_id, name)
      )`);
    await q.query(`
      CREATE TABLE secrets (
        id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        project_id       uuid NOT NULL REFERENCES projects (id),
        app_id           uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
        name             text NOT NULL,
        type             text NOT NULL,
        current_version  integer NOT NULL,
        latest_version   integer NOT NULL,
        created_at       timestamptz NOT NULL DEFAULT now(),
        updated_at       timestamptz NOT NULL DEFAULT now(),
        version          integer NOT NULL,
        UNIQUE (app_id, name),
        CHECK (current_version BETWEEN 1 AND latest_version)
      )`);
    await q.query(`
      CREATE TABLE secret_versions (
        id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        secret_id        uuid NOT NULL REFERENCES secrets (id) ON DELETE CASCADE,
        version          integer NOT NULL,
        sealed_value_id  uuid NOT NULL UNIQUE REFERENCES sealed_values (id),
        keys             text[] NOT NULL,
        fingerprints     jsonb NOT NULL,
        size_bytes       integer NOT NULL,
        created_by       text NOT NULL,
        created_at       timestamptz NOT NULL DEFAULT now(),
        UNIQUE (secret_id, version)
      )`);
    // Ciphertext goes with its version, however the version is deleted (secret, app cascade).
    await q.query(`
      CREATE FUNCTION secret_versions_drop_sealed() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        DELETE FROM sealed_values WHERE id = OLD.sealed_value_id;
        RETURN NULL;
      END $$`);
    await q.query(
      `CREATE TRIGGER secret_versions_drop_sealed AFTER DELETE ON secret_versions FOR EACH ROW EXECUTE FUNCTION secret_versions_drop_sealed()`,
    );
    await q.query(`
      CREATE TABLE clusters (
        id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        name           text NOT NULL UNIQUE,
        labels         jsonb NOT NULL DEFAULT '{}',
        state          text NOT NULL CHECK (state IN ('registered', 'enrolled', 'disabled')),
        enrolled_at    timestamptz NULL,
        agent_version  text NULL,
        last_seen_at   timestamptz NULL,
        created_at     timestamptz NOT NULL DEFAULT now(),
        updated_at     timestamptz NOT NULL DEFAULT now(),
        version        integer NOT NULL
      )`);
    await q.query('CREATE INDEX clusters_labels ON clusters USING gin (labels)');
    await q.query(`
      CREATE TABLE enrollment_tokens (
        id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        cluster_id  uuid NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
        token_hash  bytea NOT NULL UNIQUE,
        expires_at  timestamptz NOT NULL,
        used_at     timestamptz NULL,
        created_by  text NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(
      'ALTER TABLE cluster_keys ADD CONSTRAINT cluster_keys_cluster FOREIGN KEY (cluster_id) REFERENCES clusters (id) ON DELETE CASCADE',
    );
    await q.query(
      `ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_project FOREIGN KEY (project_id) REFERENCES projects (id) ON DELETE CASCADE`,
    );
    await q.query(`
      CREATE TABLE audit_events (
        seq          bigserial PRIMARY KEY,
        at           timestamptz NOT NULL,
        actor_id     text NULL,
        actor_name   text NULL,
        action       text NOT NULL,
        method       text NOT NULL,
        path         text NOT NULL,
        target       text NULL,
        project_id   uuid NULL,
        outcome      text NOT NULL CHECK (outcome IN ('attempted', 'success', 'denied', 'failed')),
        status       integer NOT NULL,
        request_id   text NULL,
        prev_hash    bytea NOT NULL,
        hash         bytea NOT NULL
      )`);
    await q.query('CREATE INDEX audit_events_project ON audit_events (project_id, seq)');
  }

  async down(q: QueryRunner): Promise<void> {
    for (const t of ['audit_events', 'enrollment_tokens']) await q.query(`DROP TABLE ${t}`);
    await q.query('ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_project');
    await q.query('ALTER TABLE cluster_keys DROP CONSTRAINT cluster_keys_cluster');
    for (const t of ['clusters', 'secret_versions', 'secrets', 'apps', 'projects']) await q.query(`DROP TABLE ${t}`);
    await q.query('DROP FUNCTION secret_versions_drop_sealed');
  }
}
