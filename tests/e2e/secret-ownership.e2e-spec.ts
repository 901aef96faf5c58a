import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import type { ApiClient } from '../harness/api-client.js';
import { startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';

// Each Kubernetes Secret has exactly one owner (project, app, secret), decided at the centre
// (docs/decisions/008): namespaces are granted to one project by an admin, and a (namespace,
// name) belongs to one secret fleet-wide. The review's attack: a token of project B creates an
// app in project A's namespace with A's Secret name and publishes it to a shared cluster.

let s: RunningControlPlane;
let admin: ApiClient;
let shopOperator: ApiClient;
let rivalOperator: ApiClient;

async function tokenFor(role: string, project: string): Promise<ApiClient> {
  const r = await admin.post('/tokens', { name: `${role}-${project}`, role, project });
  expect(r.status).toBe(201);
  return admin.as(r.body.token);
}

beforeAll(async () => {
  s = await startControlPlane();
  admin = s.admin;
  for (const p of ['shop', 'rival']) {
    expect((await admin.post('/projects', { name: p })).status).toBe(201);
    expect((await admin.put(`/projects/${p}/cluster-selector`, { selector: {} })).status).toBe(204);
  }
  const granted = await admin.put('/projects/shop/namespaces', { namespaces: ['shop', 'shop-canary', 'shop'] });
  expect(granted.status).toBe(200);
  expect(granted.body).toEqual({ project: 'shop', namespaces: ['shop', 'shop-canary'] });
  expect((await admin.put('/projects/rival/namespaces', { namespaces: ['rival'] })).status).toBe(200);
  shopOperator = await tokenFor('operator', 'shop');
  rivalOperator = await tokenFor('operator', 'rival');
  expect((await shopOperator.post('/projects/shop/apps', { name: 'checkout', namespace: 'shop', deliveryMode: 'env' })).status).toBe(201);
  expect((await shopOperator.post('/projects/shop/apps/checkout/secrets', { name: 'checkout-db', data: { PASSWORD: 'a' } })).status).toBe(
    201,
  );
  expect((await admin.post('/clusters', { name: 'shared-store' })).status).toBe(201);
});

afterAll(async () => {
  await s?.stop();
});

describe('namespaces are claimed by one project', () => {
  it("refuses an app of another project in the shop's namespace (the reported attack), and writes nothing", async () => {
    const r = await rivalOperator.post('/projects/rival/apps', { name: 'evil', namespace: 'shop', deliveryMode: 'env' });
    expect([r.status, r.body.code]).toEqual([403, 'namespace_not_granted']);
    expect(r.headers.get('content-type')).toContain('application/problem+json');
    expect((await admin.get('/projects/rival/apps')).body.items).toEqual([]);
    // Nor can an app move there later.
    expect((await rivalOperator.post('/projects/rival/apps', { name: 'web', namespace: 'rival', deliveryMode: 'env' })).status).toBe(201);
    const moved = await rivalOperator.patch('/projects/rival/apps/web', { namespace: 'shop' });
    expect([moved.status, moved.body.code]).toEqual([403, 'namespace_not_granted']);
    expect((await admin.get('/projects/rival/apps/web')).body.namespace).toBe('rival');
  });

  it('gives a namespace to one project only; a grant that would share one is a 409 and changes nothing', async () => {
    const r = await admin.put('/projects/rival/namespaces', { namespaces: ['rival', 'shop'] });
    expect([r.status, r.body.code]).toEqual([409, 'namespace_claimed']);
    expect((await admin.get('/projects/rival/namespaces')).body.namespaces).toEqual(['rival']);
  });

  it('settles concurrent grants of one namespace to two projects with exactly one winner', async () => {
    const results = await Promise.all(
      ['shop', 'rival'].map((p) =>
        admin.put(`/projects/${p}/namespaces`, { namespaces: [...(p === 'shop' ? ['shop', 'shop-canary'] : ['rival']), 'contested'] }),
      ),
    );
    expect(results.map((r) => r.status).sort()).toEqual([200, 409]);
    const holders = await Promise.all(['shop', 'rival'].map(async (p) => (await admin.get(`/projects/${p}/namespaces`)).body.namespaces));
    expect(holders.flat().filter((n: string) => n === 'contested')).toHaveLength(1);
  });

  it('refuses to drop a namespace an app still uses, and Kubernetes system namespaces', async () => {
    const inUse = await admin.put('/projects/shop/namespaces', { namespaces: ['shop-canary'] });
    expect([inUse.status, inUse.body.code]).toEqual([409, 'namespace_in_use']);
    expect((await admin.get('/projects/shop/namespaces')).body.namespaces).toContain('shop');
    const system = await admin.put('/projects/shop/namespaces', { namespaces: ['shop', 'kube-system'] });
    expect([system.status, system.body.code]).toEqual([400, 'namespace_reserved']);
  });

  it('lets only admins grant namespaces; project tokens may read their own', async () => {
    expect((await shopOperator.put('/projects/shop/namespaces', { namespaces: ['shop', 'shop-canary', 'x'] })).status).toBe(403);
    expect((await shopOperator.get('/projects/shop/namespaces')).body.namespaces).toEqual(expect.arrayContaining(['shop', 'shop-canary']));
    expect((await rivalOperator.get('/projects/shop/namespaces')).status).toBe(404);
  });
});

describe('a (namespace, name) has one owning secret', () => {
  it('refuses a second app of the project delivering the same Secret, with a 409 and nothing written', async () => {
    expect((await shopOperator.post('/projects/shop/apps', { name: 'checkout-v2', namespace: 'shop', deliveryMode: 'env' })).status).toBe(
      201,
    );
    const dup = await shopOperator.post('/projects/shop/apps/checkout-v2/secrets', { name: 'checkout-db', data: { PASSWORD: 'b' } });
    expect([dup.status, dup.body.code]).toEqual([409, 'secret_target_conflict']);
    expect((await admin.get('/projects/shop/apps/checkout-v2/secrets')).body.items).toEqual([]);
    // The refused value was not sealed either: no version row and no orphan ciphertext.
    const db = new pg.Client({ connectionString: s.databaseUrl });
    await db.connect();
    try {
      const { rows } = await db.query(
        `SELECT (SELECT count(*) FROM secrets)::int AS secrets, (SELECT count(*) FROM secret_versions)::int AS versions,
                (SELECT count(*) FROM sealed_values)::int AS sealed`,
      );
      expect(rows[0].secrets).toBe(rows[0].versions);
      expect(rows[0].sealed).toBe(rows[0].versions);
    } finally {
      await db.end();
    }
  });

  it('refuses moving an app onto a namespace where one of its Secret names is taken, and leaves it where it was', async () => {
    expect((await shopOperator.post('/projects/shop/apps', { name: 'canary', namespace: 'shop-canary', deliveryMode: 'env' })).status).toBe(
      201,
    );
    expect((await shopOperator.post('/projects/shop/apps/canary/secrets', { name: 'checkout-db', data: { PASSWORD: 'c' } })).status).toBe(
      201,
    );
    const moved = await shopOperator.patch('/projects/shop/apps/canary', { namespace: 'shop' });
    expect([moved.status, moved.body.code]).toEqual([409, 'secret_target_conflict']);
    const app = await admin.get('/projects/shop/apps/canary');
    expect([app.body.namespace, app.body.version]).toEqual(['shop-canary', 1]);
  });

  it('moves an app whose names are free, and its secrets with it', async () => {
    expect((await shopOperator.post('/projects/shop/apps/canary/secrets', { name: 'canary-only', data: { K: 'v' } })).status).toBe(201);
    expect((await shopOperator.post('/projects/shop/apps', { name: 'mover', namespace: 'shop-canary', deliveryMode: 'env' })).status).toBe(
      201,
    );
    expect((await shopOperator.post('/projects/shop/apps/mover/secrets', { name: 'mover-db', data: { K: 'v' } })).status).toBe(201);
    expect((await shopOperator.patch('/projects/shop/apps/mover', { namespace: 'shop' })).status).toBe(200);
    // Now nothing else may take shop/mover-db.
    const taken = await shopOperator.post('/projects/shop/apps/checkout/secrets', { name: 'mover-db', data: { K: 'x' } });
    expect([taken.status, taken.body.code]).toEqual([409, 'secret_target_conflict']);
  });

  it('settles concurrent creations of one Secret by two apps with exactly one owner', async () => {
    const results = await Promise.all(
      ['checkout', 'checkout-v2'].map((app) =>
        shopOperator.post(`/projects/shop/apps/${app}/secrets`, { name: 'race-db', data: { PASSWORD: app } }),
      ),
    );
    expect(results.map((r) => r.status).sort()).toEqual([201, 409]);
  });

  it('publishes only single-owner Secrets: the snapshot of a shared cluster names each target once', async () => {
    for (const app of ['checkout', 'checkout-v2', 'canary', 'mover'])
      expect((await shopOperator.post(`/projects/shop/apps/${app}/publish`, { clusters: ['shared-store'] })).status).toBe(200);
    expect((await rivalOperator.post('/projects/rival/apps/web/publish', { clusters: ['shared-store'] })).status).toBe(200);
    const db = new pg.Client({ connectionString: s.databaseUrl });
    await db.connect();
    try {
      const { rows } = await db.query(
        `SELECT a.namespace, s.name, count(*)::int AS owners FROM cluster_apps ca JOIN secrets s ON s.app_id = ca.app_id
           JOIN apps a ON a.id = s.app_id WHERE ca.published GROUP BY 1, 2 HAVING count(*) > 1`,
      );
      expect(rows).toEqual([]);
    } finally {
      await db.end();
    }
  });
});
