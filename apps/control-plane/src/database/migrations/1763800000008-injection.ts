import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Delivery mode inject (issue 19): an app may be delivered without a Kubernetes Secret, to the
 * pods of its consumers, and agents report what they handed to whom (injection_grants: which
 * secret at which version went to which namespace and service account; never a value).
 */
export class Injection1763800000008 implements MigrationInterface {
  name = 'Injection1763800000008';

  async up(q: QueryRunner): Promise<void> {
    // The inline CHECK of 1763800000002 got PostgreSQL's default name.
    await q.query('ALTER TABLE apps DROP CONSTRAINT apps_delivery_mode_check');
    await q.query(`ALTER TABLE apps ADD CONSTRAINT apps_delivery_mode_check CHECK (delivery_mode IN ('env', 'volume', 'inject'))`);
    await q.query(`ALTER TABLE apps ADD COLUMN consumers jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(consumers) = 'array')`);
    await q.query(`
      CREATE TABLE injection_grants (
        cluster_id       uuid NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
        secret_id        uuid NOT NULL REFERENCES secrets (id) ON DELETE CASCADE,
        namespace        text NOT NULL,
        service_account  text NOT NULL,
        version          integer NOT NULL,
        grants           bigint NOT NULL CHECK (grants >= 0),
        last_pod         text NOT NULL,
        first_at         timestamptz NOT NULL,
        last_at          timestamptz NOT NULL,
        PRIMARY KEY (cluster_id, secret_id, namespace, service_account)
      )`);
    // The consumption view of an app reads by secret (the primary key leads with the cluster).
    await q.query('CREATE INDEX injection_grants_secret ON injection_grants (secret_id)');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE injection_grants');
    await q.query('ALTER TABLE apps DROP COLUMN consumers');
    // Fails while an inject app exists: switch or delete it first (its secrets would go with a delete).
    await q.query('ALTER TABLE apps DROP CONSTRAINT apps_delivery_mode_check');
    await q.query(`ALTER TABLE apps ADD CONSTRAINT apps_delivery_mode_check CHECK (delivery_mode IN ('env', 'volume'))`);
  }
}
