import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Publications and delivery: where each app is published (placement), which apps each cluster
 * should hold (cluster_apps, with the cluster generation at which that last changed), the
 * snapshot agents read (cluster_secrets), the per-cluster wrapped data keys that make
 * re-delivery free of HSM work, what agents report, and Idempotency-Key replays.
 */
export class Delivery1763800000005 implements MigrationInterface {
  name = 'Delivery1763800000005';

  async up(q: QueryRunner): Promise<void> {
    // null: the project may not target any cluster until an admin allows some ({} allows all).
    await q.query('ALTER TABLE projects ADD COLUMN cluster_selector jsonb NULL');
    await q.query(`
      ALTER TABLE clusters
        ADD COLUMN built_generation bigint NOT NULL DEFAULT 0 CHECK (built_generation >= 0),
        ADD COLUMN delivery_error   text NULL`);
    await q.query(`
      CREATE TABLE placements (
        app_id      uuid PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
        clusters    text[] NOT NULL DEFAULT '{}',
        selectors   jsonb NOT NULL DEFAULT '[]',
        excluded    text[] NOT NULL DEFAULT '{}',
        created_at  timestamptz NOT NULL DEFAULT now(),
        updated_at  timestamptz NOT NULL DEFAULT now(),
        version     integer NOT NULL DEFAULT 1
      )`);
    await q.query(`
      CREATE TABLE cluster_apps (
        cluster_id  uuid NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
        app_id      uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
        published   boolean NOT NULL,
        generation  bigint NOT NULL,
        changed_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (cluster_id, app_id)
      )`);
    await q.query('CREATE INDEX cluster_apps_app ON cluster_apps (app_id)');
    await q.query(`
      CREATE TABLE cluster_secrets (
        cluster_id       uuid NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
        secret_id        uuid NOT NULL REFERENCES secrets (id) ON DELETE CASCADE,
        app_id           uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
        secret_version   integer NOT NULL,
        sealed_value_id  uuid NOT NULL,
        -- the cluster key its data key is wrapped under (see cluster_wrapped_keys)
        cluster_key_version  integer NOT NULL,
        -- the cluster generation at which this entry last changed
        generation       bigint NOT NULL,
        PRIMARY KEY (cluster_id, secret_id)
      )`);
    await q.query(`
      CREATE TABLE cluster_wrapped_keys (
        cluster_id           uuid NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
        sealed_value_id      uuid NOT NULL REFERENCES sealed_values (id) ON DELETE CASCADE,
        cluster_key_version  integer NOT NULL,
        wrapped_dek          bytea NOT NULL,
        PRIMARY KEY (cluster_id, sealed_value_id, cluster_key_version)
      )`);
    await q.query(`
      CREATE TABLE secret_statuses (
        cluster_id   uuid NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
        namespace    text NOT NULL,
        name         text NOT NULL,
        secret_id    uuid NULL,
        version      integer NOT NULL,
        generation   bigint NOT NULL,
        state        text NOT NULL CHECK (state IN ('applied', 'failed', 'conflict', 'deleted')),
        reason       text NOT NULL DEFAULT '',
        message      text NOT NULL DEFAULT '',
        reported_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (cluster_id, namespace, name)
      )`);
    await q.query('CREATE INDEX secret_statuses_secret ON secret_statuses (secret_id)');
    await q.query(`
      CREATE TABLE idempotency_keys (
        token_id      uuid NOT NULL,
        key           text NOT NULL,
        request_hash  bytea NOT NULL,
        status        integer NOT NULL,
        response      jsonb NOT NULL,
        created_at    timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (token_id, key)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    for (const t of ['idempotency_keys', 'secret_statuses', 'cluster_wrapped_keys', 'cluster_secrets', 'cluster_apps', 'placements'])
      await q.query(`DROP TABLE ${t}`);
    await q.query('ALTER TABLE clusters DROP COLUMN built_generation, DROP COLUMN delivery_error');
    await q.query('ALTER TABLE projects DROP COLUMN cluster_selector');
  }
}
