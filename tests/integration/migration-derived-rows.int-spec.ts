import { randomBytes, randomUUID } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import type { DataSource } from 'typeorm';
import { openDatabase } from '../../apps/control-plane/src/database/data-source.js';
import { SnapshotBuildRepository } from '../../apps/control-plane/src/delivery/snapshot-build.repository.js';
import { createTestDatabase } from '../harness/test-env.js';
import { undoMigrationsThrough } from '../harness/migrations.js';

// Migration 1763800000012: the snapshot build's derived tables have no foreign keys (each
// inserted row paid a referential check), and deleting a parent still deletes what was derived
// from it — now by statement-level triggers. `down` puts the constraints back.

interface World {
  clusters: string[];
  apps: string[];
  secrets: Array<{ id: string; appId: string; sealedValueId: string }>;
}

/** Two clusters, two apps with two secrets each (one sealed value a secret), every row derived for both clusters. */
async function world(ds: DataSource): Promise<World> {
  const [{ id: projectId }] = await ds.query(`INSERT INTO projects (name, version) VALUES ('derived', 1) RETURNING id`);
  await ds.query(`INSERT INTO project_namespaces (namespace, project_id, granted_by) VALUES ('derived', $1, 'test')`, [projectId]);
  // The template database may hold a root key already; sealed values need one row to point at.
  await ds.query(`INSERT INTO root_keys (version, state) SELECT 1, 'active' WHERE NOT EXISTS (SELECT 1 FROM root_keys)`);
  const [{ v: rootKeyVersion }] = await ds.query(`SELECT max(version) AS v FROM root_keys`);
  const clusters: string[] = [];
  for (const name of ['c-one', 'c-two'])
    clusters.push((await ds.query(`INSERT INTO clusters (name, state, version) VALUES ($1, 'registered', 1) RETURNING id`, [name]))[0].id);
  const apps: string[] = [];
  const secrets: World['secrets'] = [];
  for (const app of ['web', 'api']) {
    const [{ id: appId }] = await ds.query(
      `INSERT INTO apps (project_id, name, namespace, delivery_mode, secret_type, mount_path, version)
       VALUES ($1, $2, 'derived', 'env', 'Opaque', '/etc/sigil', 1) RETURNING id`,
      [projectId, app],
    );
    apps.push(appId);
    for (const name of [`${app}-a`, `${app}-b`]) {
      const [{ id: secretId }] = await ds.query(
        `INSERT INTO secrets (project_id, app_id, namespace, name, type, current_version, latest_version, version)
         VALUES ($1, $2, 'derived', $3, 'Opaque', 1, 1, 1) RETURNING id`,
        [projectId, appId, name],
      );
      const [{ id: sealedValueId }] = await ds.query(
        `INSERT INTO sealed_values (root_key_version, wrapped_dek, iv, ciphertext) VALUES ($1, $2, $3, $4) RETURNING id`,
        [rootKeyVersion, randomBytes(40), randomBytes(12), randomBytes(32)],
      );
      await ds.query(
        `INSERT INTO secret_versions (secret_id, version, sealed_value_id, keys, fingerprints, size_bytes, created_by)
         VALUES ($1, 1, $2, '{K}', '{}', 1, 'test')`,
        [secretId, sealedValueId],
      );
      secrets.push({ id: secretId, appId, sealedValueId });
    }
  }
  for (const c of clusters)
    for (const s of secrets) {
      await ds.query(
        `INSERT INTO cluster_secrets (cluster_id, secret_id, app_id, secret_version, sealed_value_id, cluster_key_version, generation)
         VALUES ($1, $2, $3, 1, $4, 1, 1)`,
        [c, s.id, s.appId, s.sealedValueId],
      );
      await ds.query(
        `INSERT INTO cluster_wrapped_keys (cluster_id, sealed_value_id, cluster_key_version, wrapped_dek) VALUES ($1, $2, 1, $3)`,
        [c, s.sealedValueId, randomBytes(40)],
      );
    }
  return { clusters, apps, secrets };
}

const count = async (ds: DataSource, table: 'cluster_secrets' | 'cluster_wrapped_keys') =>
  Number((await ds.query(`SELECT count(*)::int AS n FROM ${table}`))[0].n);

const derivedForeignKeys = async (ds: DataSource) =>
  (
    await ds.query<Array<{ name: string }>>(
      `SELECT conname AS name FROM pg_constraint WHERE contype = 'f' AND conrelid::regclass::text IN ('cluster_secrets', 'cluster_wrapped_keys') ORDER BY 1`,
    )
  ).map((r) => r.name);

describe('migration: derived rows without foreign keys', () => {
  it('deleting a cluster, a secret, a sealed value or an app removes exactly the rows derived from it', async () => {
    const db = await createTestDatabase();
    const ds = await openDatabase(db.url, 2);
    try {
      expect(await derivedForeignKeys(ds)).toEqual([]);
      const w = await world(ds);
      expect([await count(ds, 'cluster_secrets'), await count(ds, 'cluster_wrapped_keys')]).toEqual([8, 8]);

      await ds.query(`DELETE FROM clusters WHERE id = $1`, [w.clusters[1]]);
      expect([await count(ds, 'cluster_secrets'), await count(ds, 'cluster_wrapped_keys')]).toEqual([4, 4]);

      // A secret: its snapshot rows go; its version's sealed value goes too (trigger of migration 002), and with it the wrapped copies.
      await ds.query(`DELETE FROM secrets WHERE id = $1`, [w.secrets[0]!.id]);
      expect([await count(ds, 'cluster_secrets'), await count(ds, 'cluster_wrapped_keys')]).toEqual([3, 3]);

      // An app, with its remaining secret.
      await ds.query(`DELETE FROM apps WHERE id = $1`, [w.apps[0]]);
      expect([await count(ds, 'cluster_secrets'), await count(ds, 'cluster_wrapped_keys')]).toEqual([2, 2]);
      const left = await ds.query<Array<{ s: string }>>(`SELECT secret_id AS s FROM cluster_secrets ORDER BY 1`);
      expect(left.map((r) => r.s).sort()).toEqual([w.secrets[2]!.id, w.secrets[3]!.id].sort());

      // Deleting several parents in one statement is one trigger run that still removes them all.
      await ds.query(`DELETE FROM secrets WHERE id = ANY($1::uuid[])`, [[w.secrets[2]!.id, w.secrets[3]!.id]]);
      expect([await count(ds, 'cluster_secrets'), await count(ds, 'cluster_wrapped_keys')]).toEqual([0, 0]);
    } finally {
      await ds.destroy();
      await db.drop();
    }
  }, 60_000);

  it('the build does not save a wrapped copy whose cluster or sealed value is gone', async () => {
    const db = await createTestDatabase();
    const ds = await openDatabase(db.url, 2);
    try {
      const w = await world(ds);
      await ds.query(`DELETE FROM cluster_wrapped_keys`);
      const repo = new SnapshotBuildRepository(ds);
      await repo.saveWrappedMany(undefined, [
        { clusterId: w.clusters[0]!, keyVersion: 2, sealedValueId: w.secrets[0]!.sealedValueId, wrapped: randomBytes(40) },
        { clusterId: randomUUID(), keyVersion: 2, sealedValueId: w.secrets[0]!.sealedValueId, wrapped: randomBytes(40) },
        { clusterId: w.clusters[0]!, keyVersion: 2, sealedValueId: randomUUID(), wrapped: randomBytes(40) },
      ]);
      const rows = await ds.query<Array<{ c: string; s: string }>>(
        `SELECT cluster_id AS c, sealed_value_id AS s FROM cluster_wrapped_keys`,
      );
      expect(rows).toEqual([{ c: w.clusters[0], s: w.secrets[0]!.sealedValueId }]);
    } finally {
      await ds.destroy();
      await db.drop();
    }
  }, 60_000);

  it('down drops the triggers, removes orphans and restores the foreign keys; up again', async () => {
    const db = await createTestDatabase();
    const ds = await openDatabase(db.url, 2);
    try {
      const w = await world(ds);
      // An orphan a race could leave: a wrapped copy for a cluster that no longer exists.
      await ds.query(
        `INSERT INTO cluster_wrapped_keys (cluster_id, sealed_value_id, cluster_key_version, wrapped_dek) VALUES ($1, $2, 1, $3)`,
        [randomUUID(), w.secrets[0]!.sealedValueId, randomBytes(40)],
      );
      await undoMigrationsThrough(ds, 'DerivedRowsWithoutForeignKeys1763800000012');
      expect(await derivedForeignKeys(ds)).toEqual([
        'cluster_secrets_app_id_fkey',
        'cluster_secrets_cluster_id_fkey',
        'cluster_secrets_secret_id_fkey',
        'cluster_wrapped_keys_cluster_id_fkey',
        'cluster_wrapped_keys_sealed_value_id_fkey',
      ]);
      expect(await count(ds, 'cluster_wrapped_keys')).toBe(8);
      await ds.runMigrations({ transaction: 'all' });
      expect(await derivedForeignKeys(ds)).toEqual([]);
    } finally {
      await ds.destroy();
      await db.drop();
    }
  }, 60_000);
});
