import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { ApiClient } from '../harness/api-client.js';
import { startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';

// Against a running control plane on real PostgreSQL, Redis and SoftHSM, with labelled clusters:
// what each token sees of the fleet, and publishing one app by two different selectors.

let s: RunningControlPlane;
let admin: ApiClient;

let minted = 0;
async function token(role: string, project?: string): Promise<ApiClient> {
  const r = await admin.post('/tokens', { name: `${role}-${project ?? 'all'}-${++minted}`, role, ...(project ? { project } : {}) });
  expect(r.status).toBe(201);
  return admin.as(r.body.token);
}

const names = (r: { body: { items: Array<{ name: string }> } }) => r.body.items.map((c) => c.name);

beforeAll(async () => {
  s = await startControlPlane();
  admin = s.admin;
  for (const [name, region] of [
    ['eu-1', 'eu'],
    ['eu-2', 'eu'],
    ['us-1', 'us'],
    ['ap-1', 'ap'],
  ]) {
    expect((await admin.post('/clusters', { name, labels: { region } })).status).toBe(201);
  }
  // shop may publish to Europe and the US; closed to nothing (no selector set).
  expect((await admin.post('/projects', { name: 'shop' })).status).toBe(201);
  expect((await admin.post('/projects', { name: 'closed' })).status).toBe(201);
  const allowed = { matchExpressions: [{ key: 'region', operator: 'In', values: ['eu', 'us'] }] };
  expect((await admin.put('/projects/shop/cluster-selector', { selector: allowed })).status).toBe(204);
  expect((await admin.put('/projects/shop/namespaces', { namespaces: ['shop'] })).status).toBe(200);
  expect((await admin.post('/projects/shop/apps', { name: 'web', namespace: 'shop', deliveryMode: 'env' })).status).toBe(201);
  expect((await admin.post('/projects/shop/apps/web/secrets', { name: 'env', data: { API_KEY: 'k' } })).status).toBe(201);
});

afterAll(async () => {
  await s?.stop();
});

describe('publishing by selector', () => {
  it('a second publish with another selector adds its clusters (region=eu, then region=us)', async () => {
    const eu = await admin.post('/projects/shop/apps/web/publish', { selector: { matchLabels: { region: 'eu' } } });
    expect(eu.status).toBe(200);
    expect(eu.body.deliveries.map((d: { cluster: string }) => d.cluster)).toEqual(['eu-1', 'eu-2']);

    const us = await admin.post('/projects/shop/apps/web/publish', { selector: { matchLabels: { region: 'us' } } });
    expect(us.status).toBe(200);
    expect(us.body.selectors).toEqual([{ matchLabels: { region: 'eu' } }, { matchLabels: { region: 'us' } }]);
    expect(us.body.deliveries.map((d: { cluster: string }) => d.cluster)).toEqual(['eu-1', 'eu-2', 'us-1']);

    // The same selector again, keys in another order: no duplicate.
    const again = await admin.post('/projects/shop/apps/web/publish', {
      selector: { matchExpressions: [{ values: ['us'], operator: 'In', key: 'region' }] },
    });
    const same = await admin.post('/projects/shop/apps/web/publish', {
      selector: { matchExpressions: [{ key: 'region', operator: 'In', values: ['us'] }] },
    });
    expect(same.body.selectors).toHaveLength(3);
    expect(same.body.selectors).toEqual(again.body.selectors);
  });
});

describe('which clusters a token sees', () => {
  it('a project-scoped token lists only the clusters its project may publish to', async () => {
    for (const role of ['pipeline', 'viewer', 'operator']) {
      const t = await token(role, 'shop');
      expect(names(await t.get('/clusters'))).toEqual(['eu-1', 'eu-2', 'us-1']);
      const first = await t.get('/clusters?limit=2');
      expect(names(first)).toEqual(['eu-1', 'eu-2']);
      const rest = await t.get(`/clusters?limit=2&after=${first.body.next}`);
      expect(rest.body).toMatchObject({ items: [{ name: 'us-1' }], next: null });
      expect(names(await t.get('/clusters?labels=region=us'))).toEqual(['us-1']);
      expect(names(await t.get('/clusters?labels=region=ap'))).toEqual([]);
      expect((await t.get('/clusters/eu-1')).status).toBe(200);
    }
  });

  it('a cluster outside the scope is 404, exactly like one that does not exist', async () => {
    const t = await token('viewer', 'shop');
    const hidden = await t.get('/clusters/ap-1');
    const missing = await t.get('/clusters/zz-9');
    expect([hidden.status, hidden.body.code]).toEqual([404, 'cluster_not_found']);
    expect([missing.status, missing.body.code]).toEqual([404, 'cluster_not_found']);
    expect(hidden.text).not.toContain('"ap"');
    const shape = (r: typeof hidden) => ({ ...r.body, detail: undefined, instance: undefined, requestId: undefined });
    expect(shape(hidden)).toEqual(shape(missing));
  });

  it('a project without a cluster selector sees no cluster', async () => {
    const t = await token('viewer', 'closed');
    const r = await t.get('/clusters');
    expect(r.body).toEqual({ items: [], next: null });
    expect((await t.get('/clusters/eu-1')).status).toBe(404);
  });

  it('an unscoped non-admin token sees the clusters some project may publish to; an admin sees all', async () => {
    const viewer = await token('viewer');
    expect(names(await viewer.get('/clusters'))).toEqual(['eu-1', 'eu-2', 'us-1']);
    expect((await viewer.get('/clusters/ap-1')).status).toBe(404);
    expect(names(await admin.get('/clusters'))).toEqual(['ap-1', 'eu-1', 'eu-2', 'us-1']);
    expect((await admin.get('/clusters/ap-1')).status).toBe(200);

    // The scope follows the project's selector as soon as an admin changes it.
    expect((await admin.put('/projects/closed/cluster-selector', { selector: { matchLabels: { region: 'ap' } } })).status).toBe(204);
    expect(names(await (await token('viewer', 'closed')).get('/clusters'))).toEqual(['ap-1']);
    expect(names(await viewer.get('/clusters'))).toEqual(['ap-1', 'eu-1', 'eu-2', 'us-1']);
  });
});
