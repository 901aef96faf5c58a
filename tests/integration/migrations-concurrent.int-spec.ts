import { describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { openDatabase } from '../../apps/control-plane/src/database/data-source.js';
import { testEnv, uniqueName } from '../harness/test-env.js';

// Replicas that start together on an empty database must not trip over each other's
// migrations (TypeORM takes no lock of its own: both created the migrations table and one failed
// with a duplicate pg_type row; found by the fleet bench's two-replica run).
describe('migrations', () => {
  it('three control planes starting at once on an empty database all migrate it, once', async () => {
    const env = testEnv();
    const name = uniqueName('m').replace(/-/g, '_');
    const admin = async (sql: string) => {
      const c = new pg.Client({ connectionString: env.postgres.adminUrl });
      await c.connect();
      try {
        return await c.query(sql);
      } finally {
        await c.end();
      }
    };
    await admin(`CREATE DATABASE ${name} TEMPLATE template0`);
    const url = new URL(env.postgres.adminUrl);
    url.pathname = `/${name}`;
    try {
      const opened = await Promise.all([1, 2, 3].map(() => openDatabase(url.toString(), 2)));
      try {
        const rows = await opened[0]!.query<Array<{ name: string; n: number }>>(
          'SELECT name, count(*)::int AS n FROM schema_migrations GROUP BY name',
        );
        expect(rows.length).toBeGreaterThanOrEqual(8);
        expect(rows.every((r) => r.n === 1)).toBe(true);
      } finally {
        await Promise.all(opened.map((ds) => ds.destroy()));
      }
    } finally {
      await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    }
  }, 120_000);
});
