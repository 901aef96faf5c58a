import { describe, expect, it } from '@jest/globals';
import { openDatabase } from '../../apps/control-plane/src/database/data-source.js';
import { createTestDatabase } from '../harness/test-env.js';

// Migration 1763800000009 (generated secrets): its constraints hold, and `down` undoes it on a
// database with secrets in it (generated ones stay, as typed secrets with their versions).
describe('migration: generated secrets', () => {
  it('refuses a schedule without a recipe or a due time; down removes the columns and keeps the rows; up again', async () => {
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
      const insert = (name: string, cols: string, vals: string) =>
        ds.query(
          `INSERT INTO secrets (project_id, app_id, namespace, name, type, current_version, latest_version, version${cols})
           VALUES ($1, $2, 'mig', '${name}', 'Opaque', 1, 1, 1${vals})`,
          [projectId, appId],
        );
      const recipe = `'{"keys":[{"key":"P","kind":"hex","length":16}]}'`;
      await insert('generated', ', generator, rotate_every_days, next_rotation_at', `, ${recipe}, 30, now()`);
      await insert('typed', '', '');
      await expect(insert('no-recipe', ', rotate_every_days, next_rotation_at', ', 30, now()')).rejects.toThrow(
        /secrets_rotation_schedule/,
      );
      await expect(insert('no-due', ', generator, rotate_every_days', `, ${recipe}, 30`)).rejects.toThrow(/secrets_rotation_schedule/);
      await expect(insert('due-only', ', generator, next_rotation_at', `, ${recipe}, now()`)).rejects.toThrow(/secrets_rotation_schedule/);
      await expect(insert('zero', ', generator, rotate_every_days, next_rotation_at', `, ${recipe}, 0, now()`)).rejects.toThrow(/check/);

      const columns = async () =>
        (
          await ds.query<Array<{ c: string }>>(
            `SELECT column_name AS c FROM information_schema.columns WHERE table_name = 'secrets' AND column_name IN
               ('generator', 'rotate_every_days', 'next_rotation_at', 'last_rotated_at') ORDER BY 1`,
          )
        ).map((r) => r.c);
      expect(await columns()).toEqual(['generator', 'last_rotated_at', 'next_rotation_at', 'rotate_every_days']);
      // Down to before this migration (later ones first).
      for (let i = 0; i < 10 && (await columns()).length > 0; i++) await ds.undoLastMigration({ transaction: 'all' });
      expect(await columns()).toEqual([]);
      expect((await ds.query(`SELECT name FROM secrets ORDER BY name`)).map((r: { name: string }) => r.name)).toEqual([
        'generated',
        'typed',
      ]);
      await ds.runMigrations({ transaction: 'all' });
      expect(await columns()).toHaveLength(4);
    } finally {
      await ds.destroy();
      await db.drop();
    }
  }, 60_000);
});
