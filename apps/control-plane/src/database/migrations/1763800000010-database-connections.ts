import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Database connections (issue 20, docs/dynamic-secrets.md "Connections"): where dynamic secrets
 * create their roles. The admin password is a sealed_values row (ciphertext under the connection
 * AAD, docs/crypto.md), so root-key rotation re-wraps it and root-key destruction counts it like
 * any value; it goes with the connection, and a replaced one goes at once (triggers, as
 * secret_versions do). The id is chosen by the service: the AAD and the default role prefix need
 * it before the row exists.
 */
export class DatabaseConnections1763800000010 implements MigrationInterface {
  name = 'DatabaseConnections1763800000010';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE database_connections (
        id                              uuid PRIMARY KEY,
        project_id                      uuid NOT NULL REFERENCES projects (id) ON DELETE RESTRICT,
        name                            text NOT NULL,
        engine                          text NOT NULL CHECK (engine IN ('postgresql')),
        host                            text NOT NULL CHECK (length(host) BETWEEN 1 AND 253),
        port                            integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
        database                        text NOT NULL CHECK (octet_length(database) BETWEEN 1 AND 63),
        username                        text NOT NULL CHECK (octet_length(username) BETWEEN 1 AND 63),
        tls_mode                        text NOT NULL CHECK (tls_mode IN ('disable', 'require', 'verify-full')),
        ca_certificate                  text NULL,
        role_prefix                     text NOT NULL CHECK (role_prefix ~ '^[a-z_][a-z0-9_]{0,31}$'),
        admin_password_sealed_value_id  uuid NOT NULL REFERENCES sealed_values (id),
        admin_password_set_at           timestamptz NOT NULL,
        created_at                      timestamptz NOT NULL DEFAULT now(),
        updated_at                      timestamptz NOT NULL DEFAULT now(),
        version                         integer NOT NULL,
        CONSTRAINT database_connections_name_unique UNIQUE (project_id, name),
        -- Roles are found by prefix (the reaper lists them): two connections sharing one would reap each other's.
        CONSTRAINT database_connections_role_prefix_unique UNIQUE (role_prefix),
        CONSTRAINT database_connections_sealed_unique UNIQUE (admin_password_sealed_value_id)
      )`);
    await q.query(`
      CREATE FUNCTION database_connections_drop_sealed() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF TG_OP = 'DELETE' OR OLD.admin_password_sealed_value_id IS DISTINCT FROM NEW.admin_password_sealed_value_id THEN
          DELETE FROM sealed_values WHERE id = OLD.admin_password_sealed_value_id;
        END IF;
        RETURN NULL;
      END $$`);
    await q.query(
      `CREATE TRIGGER database_connections_drop_sealed AFTER DELETE OR UPDATE OF admin_password_sealed_value_id ON database_connections
         FOR EACH ROW EXECUTE FUNCTION database_connections_drop_sealed()`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    // The sealed admin passwords go with their connections (the trigger, before it is dropped).
    await q.query('DELETE FROM database_connections');
    await q.query('DROP TABLE database_connections');
    await q.query('DROP FUNCTION database_connections_drop_sealed()');
  }
}
