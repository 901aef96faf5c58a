import { randomUUID } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import { openDatabase } from '../../apps/control-plane/src/database/data-source.js';
import { createTestDatabase } from '../harness/test-env.js';
import { undoMigrationsThrough } from '../harness/migrations.js';

// Migration 1763800000011 (dynamic secrets): a secret is dynamic or generated, not both; at most
// one intent and one active lease per (secret, cluster); an active lease has its sealed value;
// deleting the secret leaves its leases (their roles are still to be revoked); down undoes it.
describe('migration: dynamic secrets', () => {
  it('holds its constraints, keeps leases when their secret goes, and undoes cleanly', async () => {
    const db = await createTestDatabase();
    const ds = await openDatabase(db.url, 2);
    try {
      const [{ id: projectId }] = await ds.query(`INSERT INTO projects (name, version) VALUES ('mig', 1) RETURNING id`);
      await ds.query(`INSERT INTO project_namespaces (namespace, project_id, granted_by) VALUES ('mig', $1, 'test')`, [projectId]);
      const [{ id: appId }] = await ds.query(
        `INSERT INTO apps (project_id, name, namespace, delivery_mode, secret_type, mount_path, version)
         VALUES ($1, 'web', 'mig', 'env', 'Opaque', '/etc/sigil', 1) RETURNING id`,
        [projectId],
      );
      const spec = `'{"connection":"db","keys":{"password":"{{password}}"}}'`;
      const recipe = `'{"keys":[{"key":"P","kind":"hex","length":16}]}'`;
      const secret = (name: string, cols = '', vals = '') =>
        ds.query(
          `INSERT INTO secrets (project_id, app_id, namespace, name, type, current_version, latest_version, version${cols})
           VALUES ($1, $2, 'mig', '${name}', 'Opaque', 1, 1, 1${vals}) RETURNING id`,
          [projectId, appId],
        );
      const [{ id: secretId }] = await secret('dyn', ', dynamic', `, ${spec}`);
      await expect(secret('both', ', dynamic, generator', `, ${spec}, ${recipe}`)).rejects.toThrow(/secrets_dynamic_not_generated/);
      await expect(secret('bad', ', dynamic', `, '{"keys":[]}'`)).rejects.toThrow(/check/);

      const clusterId = randomUUID();
      const lease = (serial: number, state: string) =>
        ds.query(
          `INSERT INTO credential_leases (project_id, app_id, secret_id, cluster_id, connection_id, serial, role_name, state,
                                          expires_at, renew_at, grace_seconds)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + interval '1 hour', now() + interval '30 minutes', 60)`,
          [projectId, appId, secretId, clusterId, projectId, serial, `sigil_x_${serial}`, state],
        );
      await lease(1, 'intent');
      await expect(lease(2, 'intent')).rejects.toThrow(/credential_leases_one_intent/);
      // Active without its sealed value and issue time is refused.
      await expect(lease(3, 'active')).rejects.toThrow(/check/);
      await expect(lease(1, 'failed')).rejects.toThrow(/unique|duplicate/);

      await ds.query(`DELETE FROM secrets WHERE id = $1`, [secretId]);
      expect((await ds.query(`SELECT count(*)::int AS n FROM credential_leases`))[0].n).toBe(1);

      const undone = async () =>
        (await ds.query(`SELECT count(*)::int AS n FROM information_schema.tables WHERE table_name = 'credential_leases'`))[0].n === 0;
      // The intent left is live (its role may exist): undoing would orphan it, so it is refused.
      await expect(undoMigrationsThrough(ds, 'DynamicSecrets1763800000011')).rejects.toThrow(/1 credential lease\(s\) are live/);
      expect(await undone()).toBe(false);
      await ds.runMigrations({ transaction: 'all' }); // what the refused undo stopped short of
      // Revoked, with a sealed value: the undo deletes the row and, by its trigger, the ciphertext.
      await ds.query(`INSERT INTO root_keys (version, state) VALUES (999, 'retired')`);
      const [{ id: sealedId }] = await ds.query(
        `INSERT INTO sealed_values (root_key_version, wrapped_dek, iv, ciphertext)
         VALUES (999, '\\x00', '\\x000000000000000000000000', '\\x00') RETURNING id`,
      );
      await ds.query(`UPDATE credential_leases SET state = 'revoked', sealed_value_id = $1, revoked_at = now()`, [sealedId]);
      await undoMigrationsThrough(ds, 'DynamicSecrets1763800000011');
      expect(await undone()).toBe(true);
      expect(await ds.query('SELECT 1 FROM sealed_values WHERE id = $1', [sealedId])).toEqual([]);
      await ds.runMigrations({ transaction: 'all' });
      expect(await undone()).toBe(false);
    } finally {
      await ds.destroy();
      await db.drop();
    }
  }, 60_000);
});
