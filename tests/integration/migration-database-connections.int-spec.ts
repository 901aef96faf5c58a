import { describe, expect, it } from '@jest/globals';
import { openDatabase } from '../../apps/control-plane/src/database/data-source.js';
import { createTestDatabase } from '../harness/test-env.js';

// Migration 1763800000010 (database connections): its constraints hold, its trigger drops the
// sealed admin password with the connection (and a replaced one), and `down` undoes it.
describe('migration: database connections', () => {
  it('checks names, prefixes and TLS modes; drops sealed passwords with their rows; down and up again', async () => {
    const db = await createTestDatabase();
    const ds = await openDatabase(db.url, 2);
    try {
      await ds.query(`INSERT INTO root_keys (version, state) VALUES (1, 'active') ON CONFLICT DO NOTHING`);
      const [{ id: projectId }] = await ds.query(`INSERT INTO projects (name, version) VALUES ('mig', 1) RETURNING id`);
      const sealed = async () =>
        (
          await ds.query<Array<{ id: string }>>(
            `INSERT INTO sealed_values (root_key_version, wrapped_dek, iv, ciphertext) VALUES (1, '\\x00', '\\x000000000000000000000000', '\\x00') RETURNING id`,
          )
        )[0]!.id;
      const insert = async (name: string, prefix: string, tls = 'verify-full', sealedId?: string) =>
        ds.query(
          `INSERT INTO database_connections (id, project_id, name, engine, host, port, database, username, tls_mode, role_prefix,
             admin_password_sealed_value_id, admin_password_set_at, version)
           VALUES (gen_random_uuid(), $1, $2, 'postgresql', 'db', 5432, 'orders', 'admin', $3, $4, $5, now(), 1) RETURNING id`,
          [projectId, name, tls, prefix, sealedId ?? (await sealed())],
        );
      const [{ id }] = await insert('orders', 'sigil_a_');
      await expect(insert('orders', 'sigil_b_')).rejects.toThrow(/database_connections_name_unique/);
      await expect(insert('other', 'sigil_a_')).rejects.toThrow(/database_connections_role_prefix_unique/);
      await expect(insert('other', 'Sigil_')).rejects.toThrow(/check/);
      await expect(insert('other', 'sigil_b_', 'prefer')).rejects.toThrow(/check/);
      const count = async () => Number((await ds.query(`SELECT count(*) AS n FROM sealed_values`))[0].n);

      const before = await count();
      const replacement = await sealed();
      await ds.query(`UPDATE database_connections SET admin_password_sealed_value_id = $2 WHERE id = $1`, [id, replacement]);
      expect(await count()).toBe(before); // one added, the replaced one dropped
      await ds.query(`UPDATE database_connections SET host = 'db2' WHERE id = $1`, [id]);
      expect(await count()).toBe(before);
      await ds.query(`DELETE FROM database_connections WHERE id = $1`, [id]);
      expect(await count()).toBe(before - 1);

      await insert('again', 'sigil_c_');
      await ds.undoLastMigration({ transaction: 'all' });
      expect(await ds.query(`SELECT to_regclass('database_connections') AS t`)).toEqual([{ t: null }]);
      expect(await count()).toBe(before - 1); // the sealed password went with the connection
      await ds.runMigrations({ transaction: 'all' });
      expect(await ds.query(`SELECT to_regclass('database_connections')::text AS t`)).toEqual([{ t: 'database_connections' }]);
    } finally {
      await ds.destroy();
      await db.drop();
    }
  }, 60_000);
});
