import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The snapshot build's derived tables lose their foreign keys (issue 16). `cluster_secrets` and
 * `cluster_wrapped_keys` are written in bulk — 10 rows per cluster per new app, 100,000 for a
 * 10,000-cluster publish — and every inserted row paid one referential check per foreign key:
 * a lookup plus a `FOR KEY SHARE` lock on the parent row, run through SPI one row at a time.
 * Measured on PostgreSQL 18 with this table's shape, 100,000 rows took 4.65 s with the three
 * foreign keys and 1.14 s without. Every one of those rows is written by the builder from a
 * join of the parents moments earlier, under the cluster's row lock, so the checks protected
 * against nothing the build does not already ensure.
 *
 * What the foreign keys also did is kept: deleting a cluster, an app, a secret or a sealed
 * value deletes the rows derived from it, now by statement-level triggers (one DELETE per
 * statement, joined on the deleted rows, where the cascades ran one per deleted row). A row
 * written by a build racing such a delete is removed by the next build of its cluster (which the
 * delete itself triggers), or, for a wrapped copy whose cluster or ciphertext is already gone,
 * stays inert: a data key wrapped under a destroyed cluster key, with no ciphertext to open.
 */
export class DerivedRowsWithoutForeignKeys1763800000012 implements MigrationInterface {
  name = 'DerivedRowsWithoutForeignKeys1763800000012';

  async up(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE cluster_secrets DROP CONSTRAINT cluster_secrets_cluster_id_fkey');
    await q.query('ALTER TABLE cluster_secrets DROP CONSTRAINT cluster_secrets_secret_id_fkey');
    await q.query('ALTER TABLE cluster_secrets DROP CONSTRAINT cluster_secrets_app_id_fkey');
    await q.query('ALTER TABLE cluster_wrapped_keys DROP CONSTRAINT cluster_wrapped_keys_cluster_id_fkey');
    await q.query('ALTER TABLE cluster_wrapped_keys DROP CONSTRAINT cluster_wrapped_keys_sealed_value_id_fkey');
    for (const t of TRIGGERS) {
      await q.query(`
        CREATE FUNCTION ${t.fn}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          ${t.body}
          RETURN NULL;
        END $$`);
      await q.query(
        `CREATE TRIGGER ${t.fn} AFTER DELETE ON ${t.table} REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION ${t.fn}()`,
      );
    }
  }

  async down(q: QueryRunner): Promise<void> {
    for (const t of TRIGGERS) {
      await q.query(`DROP TRIGGER ${t.fn} ON ${t.table}`);
      await q.query(`DROP FUNCTION ${t.fn}()`);
    }
    // Rows a race left behind would fail the constraints: they are derived, so they go.
    await q.query(`
      DELETE FROM cluster_secrets cs WHERE NOT EXISTS (SELECT 1 FROM clusters c WHERE c.id = cs.cluster_id)
         OR NOT EXISTS (SELECT 1 FROM secrets s WHERE s.id = cs.secret_id) OR NOT EXISTS (SELECT 1 FROM apps a WHERE a.id = cs.app_id)`);
    await q.query(`
      DELETE FROM cluster_wrapped_keys wk WHERE NOT EXISTS (SELECT 1 FROM clusters c WHERE c.id = wk.cluster_id)
         OR NOT EXISTS (SELECT 1 FROM sealed_values sv WHERE sv.id = wk.sealed_value_id)`);
    await q.query(
      'ALTER TABLE cluster_secrets ADD CONSTRAINT cluster_secrets_cluster_id_fkey FOREIGN KEY (cluster_id) REFERENCES clusters (id) ON DELETE CASCADE',
    );
    await q.query(
      'ALTER TABLE cluster_secrets ADD CONSTRAINT cluster_secrets_secret_id_fkey FOREIGN KEY (secret_id) REFERENCES secrets (id) ON DELETE CASCADE',
    );
    await q.query(
      'ALTER TABLE cluster_secrets ADD CONSTRAINT cluster_secrets_app_id_fkey FOREIGN KEY (app_id) REFERENCES apps (id) ON DELETE CASCADE',
    );
    await q.query(
      'ALTER TABLE cluster_wrapped_keys ADD CONSTRAINT cluster_wrapped_keys_cluster_id_fkey FOREIGN KEY (cluster_id) REFERENCES clusters (id) ON DELETE CASCADE',
    );
    await q.query(
      'ALTER TABLE cluster_wrapped_keys ADD CONSTRAINT cluster_wrapped_keys_sealed_value_id_fkey FOREIGN KEY (sealed_value_id) REFERENCES sealed_values (id) ON DELETE CASCADE',
    );
  }
}

/** What each parent's delete removes (the cascades the foreign keys did), once per statement. */
const TRIGGERS = [
  {
    table: 'clusters',
    fn: 'clusters_drop_derived',
    body: `DELETE FROM cluster_secrets cs USING gone WHERE cs.cluster_id = gone.id;
          DELETE FROM cluster_wrapped_keys wk USING gone WHERE wk.cluster_id = gone.id;`,
  },
  { table: 'apps', fn: 'apps_drop_derived', body: 'DELETE FROM cluster_secrets cs USING gone WHERE cs.app_id = gone.id;' },
  { table: 'secrets', fn: 'secrets_drop_derived', body: 'DELETE FROM cluster_secrets cs USING gone WHERE cs.secret_id = gone.id;' },
  {
    table: 'sealed_values',
    fn: 'sealed_values_drop_derived',
    body: 'DELETE FROM cluster_wrapped_keys wk USING gone WHERE wk.sealed_value_id = gone.id;',
  },
] as const;
