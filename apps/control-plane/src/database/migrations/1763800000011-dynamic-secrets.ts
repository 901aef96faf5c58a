import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Dynamic secrets and their leases (issue 20, docs/dynamic-secrets.md, decision 020). A secret
 * may be dynamic: `secrets.dynamic` holds its recipe (connection, statements, TTLs, key
 * templates; never a value) and it has no versions. Each (secret, cluster) gets its own
 * credential, a lease in `credential_leases`, whose `serial` is that cluster's version of the
 * secret. A lease row is written (state 'intent', role name chosen) before its role exists, so
 * no role is ever created that these rows do not name.
 *
 * No foreign key to secrets, clusters or apps on purpose: deleting them must not delete the
 * rows that name roles still to be revoked; the revocation sweep revokes such leases (they are
 * no longer desired) and a retention pass deletes old revoked rows with their ciphertext.
 */
export class DynamicSecrets1763800000011 implements MigrationInterface {
  name = 'DynamicSecrets1763800000011';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE secrets ADD COLUMN dynamic jsonb CHECK (dynamic IS NULL OR jsonb_typeof(dynamic -> 'keys') = 'object')`);
    await q.query('ALTER TABLE secrets ADD CONSTRAINT secrets_dynamic_not_generated CHECK (dynamic IS NULL OR generator IS NULL)');
    // The issue sweep joins published apps to their dynamic secrets.
    await q.query('CREATE INDEX secrets_dynamic ON secrets (app_id) WHERE dynamic IS NOT NULL');
    await q.query(`
      CREATE TABLE credential_leases (
        id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        project_id             uuid NOT NULL,
        app_id                 uuid NOT NULL,
        secret_id              uuid NOT NULL,
        cluster_id             uuid NOT NULL,
        -- where the role lives; its name and revocation statements are copied here, so a lease
        -- can be revoked after its secret is gone
        connection_id          uuid NOT NULL,
        serial                 integer NOT NULL CHECK (serial >= 1),
        role_name              text NOT NULL CHECK (length(role_name) BETWEEN 1 AND 63),
        state                  text NOT NULL CHECK (state IN ('intent', 'active', 'superseded', 'revoking', 'revoked', 'failed')),
        revocation_statements  text[] NOT NULL DEFAULT '{}',
        sealed_value_id        uuid REFERENCES sealed_values (id),
        issued_at              timestamptz,
        expires_at             timestamptz NOT NULL,
        renew_at               timestamptz NOT NULL,
        grace_seconds          integer NOT NULL CHECK (grace_seconds >= 0),
        revoke_after           timestamptz,
        revoked_at             timestamptz,
        revoke_reason          text,
        attempts               integer NOT NULL DEFAULT 0,
        -- intent and revoking: when the row is due (a deadline for an issuer or revoker that may
        -- have died); failed: when the pair may be tried again
        next_attempt_at        timestamptz NOT NULL DEFAULT now(),
        last_error             text,
        created_at             timestamptz NOT NULL DEFAULT now(),
        updated_at             timestamptz NOT NULL DEFAULT now(),
        UNIQUE (secret_id, cluster_id, serial),
        UNIQUE (connection_id, role_name),
        CHECK (state NOT IN ('active', 'superseded') OR (sealed_value_id IS NOT NULL AND issued_at IS NOT NULL))
      )`);
    // At most one issue in flight and one delivered credential per (secret, cluster): the
    // unique indexes are what make two replicas' sweeps never double-issue.
    await q.query(`CREATE UNIQUE INDEX credential_leases_one_intent ON credential_leases (secret_id, cluster_id) WHERE state = 'intent'`);
    await q.query(`CREATE UNIQUE INDEX credential_leases_one_active ON credential_leases (secret_id, cluster_id) WHERE state = 'active'`);
    // The sweeps: deadlines of rows in flight, renewals, superseded ones waiting out their grace.
    await q.query(`CREATE INDEX credential_leases_due ON credential_leases (next_attempt_at) WHERE state IN ('intent', 'revoking')`);
    await q.query(`CREATE INDEX credential_leases_renew ON credential_leases (renew_at) WHERE state = 'active'`);
    await q.query(
      `CREATE INDEX credential_leases_live ON credential_leases (cluster_id, secret_id) WHERE state IN ('active', 'superseded')`,
    );
    await q.query('CREATE INDEX credential_leases_pair ON credential_leases (secret_id, cluster_id, serial DESC)');
    await q.query('CREATE INDEX credential_leases_cluster ON credential_leases (cluster_id, created_at DESC)');
    await q.query('CREATE INDEX credential_leases_app ON credential_leases (app_id, created_at DESC)');
    await q.query(`CREATE INDEX credential_leases_retention ON credential_leases (updated_at) WHERE state IN ('revoked', 'failed')`);
    // A lease's ciphertext goes with it (like a secret version's).
    await q.query(`
      CREATE FUNCTION credential_leases_drop_sealed() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF OLD.sealed_value_id IS NOT NULL THEN DELETE FROM sealed_values WHERE id = OLD.sealed_value_id; END IF;
        RETURN NULL;
      END $$`);
    await q.query(
      `CREATE TRIGGER credential_leases_drop_sealed AFTER DELETE ON credential_leases FOR EACH ROW EXECUTE FUNCTION credential_leases_drop_sealed()`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    // A live lease is a role in someone's database that only this table remembers: undoing would
    // orphan it. Revoke them first (unpublish, or delete the dynamic secrets, and wait for the sweeps).
    const [{ n }] = (await q.query(
      `SELECT count(*)::int AS n FROM credential_leases WHERE state IN ('intent', 'active', 'superseded', 'revoking')`,
    )) as [{ n: number }];
    if (n > 0)
      throw new Error(
        `refusing to undo DynamicSecrets: ${n} credential lease(s) are live (their roles exist in target databases); revoke them first`,
      );
    // Row by row, so the trigger drops each lease's sealed value (DROP TABLE fires no DELETE trigger).
    await q.query('DELETE FROM credential_leases');
    await q.query('DROP TABLE credential_leases');
    await q.query('DROP FUNCTION credential_leases_drop_sealed');
    await q.query('DROP INDEX secrets_dynamic');
    await q.query('DELETE FROM secrets WHERE dynamic IS NOT NULL');
    await q.query('ALTER TABLE secrets DROP CONSTRAINT secrets_dynamic_not_generated');
    await q.query('ALTER TABLE secrets DROP COLUMN dynamic');
  }
}
