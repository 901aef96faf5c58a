import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { type ApiClient, type ApiResponse } from '../harness/api-client.js';
import { startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import { eventually, holds } from '../harness/eventually.js';
import { metricValue } from '../harness/metrics.js';

// The operator's REST surface end to end, against a running control plane on real
// PostgreSQL, Redis and SoftHSM.

let s: RunningControlPlane;
let admin: ApiClient;
const tokens: Record<string, ApiClient> = {};

async function token(role: string, project?: string): Promise<ApiClient> {
  const r = await admin.post('/tokens', { name: `${role}-${project ?? 'all'}`, role, ...(project ? { project } : {}) });
  expect(r.status).toBe(201);
  expect(r.body.token).toMatch(/^sgl_/);
  return admin.as(r.body.token);
}

beforeAll(async () => {
  s = await startControlPlane();
  admin = s.admin;
  for (const p of ['alpha', 'beta']) {
    expect((await admin.post('/projects', { name: p, description: `project ${p}` })).status).toBe(201);
    expect((await admin.put(`/projects/${p}/namespaces`, { namespaces: [`${p}-ns`] })).status).toBe(200);
    expect((await admin.post(`/projects/${p}/apps`, { name: 'web', namespace: `${p}-ns`, deliveryMode: 'env' })).status).toBe(201);
    expect((await admin.post(`/projects/${p}/apps/web/secrets`, { name: 'web-env', data: { API_KEY: `${p}-key` } })).status).toBe(201);
  }
  tokens.operatorAlpha = await token('operator', 'alpha');
  tokens.operatorAll = await token('operator');
  tokens.pipelineAlpha = await token('pipeline', 'alpha');
  tokens.viewerAlpha = await token('viewer', 'alpha');
  tokens.viewerAll = await token('viewer');
});

afterAll(async () => {
  await s?.stop();
});

describe('secrets lifecycle', () => {
  it('creates, updates with If-Match, lists versions, rolls back — and never returns a value', async () => {
    const base = '/projects/alpha/apps/web/secrets';
    const created = await admin.post(base, {
      name: 'db',
      data: { DATABASE_URL: 'postgres://u:first@db/app' },
      binaryData: { 'ca.pem': Buffer.from('-----CA-----').toString('base64') },
    });
    expect(created.status).toBe(201);
    expect(created.headers.get('etag')).toBe('"1"');
    expect(created.body).toMatchObject({
      name: 'db',
      type: 'Opaque',
      currentVersion: 1,
      latestVersion: 1,
      keys: ['DATABASE_URL', 'ca.pem'],
    });
    expect(created.body.fingerprints.DATABASE_URL).toMatch(/^hmac-sha256:[0-9a-f]{32}$/);

    const stale = await admin.put(`${base}/db`, { data: { DATABASE_URL: 'x' } }, { 'If-Match': '"7"' });
    expect(stale.status).toBe(412);
    expect(stale.body.code).toBe('precondition_failed');

    const updated = await admin.put(`${base}/db`, { data: { DATABASE_URL: 'postgres://u:second@db/app' } }, { 'If-Match': '"1"' });
    expect(updated.status).toBe(200);
    expect(updated.body).toMatchObject({ currentVersion: 2, latestVersion: 2, keys: ['DATABASE_URL'] });
    expect(updated.body.fingerprints.DATABASE_URL).not.toBe(created.body.fingerprints.DATABASE_URL);

    const versions = await admin.get(`${base}/db/versions`);
    expect(versions.body.map((v: any) => [v.version, v.current, v.keys])).toEqual([
      [2, true, ['DATABASE_URL']],
      [1, false, ['DATABASE_URL', 'ca.pem']],
    ]);

    const rolled = await admin.post(`${base}/db/rollback`, { version: 1 });
    expect(rolled.status).toBe(200);
    expect(rolled.body).toMatchObject({
      currentVersion: 1,
      latestVersion: 2,
      keys: ['DATABASE_URL', 'ca.pem'],
      fingerprints: created.body.fingerprints,
    });
    expect((await admin.post(`${base}/db/rollback`, { version: 9 })).body.code).toBe('secret_version_not_found');

    // Same value → same fingerprint (HMAC under the HSM key), so operators can compare without seeing.
    const again = await admin.put(`${base}/db`, { data: { DATABASE_URL: 'postgres://u:first@db/app', 'ca.pem': '-----CA-----' } });
    expect(again.body.fingerprints).toEqual(created.body.fingerprints);

    for (const r of [created, updated, versions, rolled, again]) {
      expect(r.text).not.toMatch(/first@db|second@db|-----CA-----|LS0tLS1DQS0tLS0t/);
    }
    // Fingerprints are bound to their secret and key: the same value elsewhere looks different,
    // so a writer cannot match guesses against someone else's fingerprint.
    const elsewhere = await admin.post(base, {
      name: 'db-copy',
      data: { DATABASE_URL: 'postgres://u:first@db/app', OTHER: 'postgres://u:first@db/app' },
    });
    expect(elsewhere.body.fingerprints.DATABASE_URL).not.toBe(created.body.fingerprints.DATABASE_URL);
    expect(elsewhere.body.fingerprints.OTHER).not.toBe(elsewhere.body.fingerprints.DATABASE_URL);
    expect((await admin.delete(`${base}/db-copy`)).status).toBe(204);
    expect((await admin.delete(`${base}/db`)).status).toBe(204);
    expect((await admin.get(`${base}/db`)).status).toBe(404);
  });

  it('renders the pod-spec snippet for env and volume delivery', async () => {
    const env = await admin.get('/projects/alpha/apps/web/pod-spec');
    expect(env.body).toEqual({
      deliveryMode: 'env',
      podSpec: { containers: [{ name: 'app', envFrom: [{ secretRef: { name: 'web-env' } }] }] },
    });

    await admin.post('/projects/alpha/apps', { name: 'files', namespace: 'alpha-ns', deliveryMode: 'volume', mountPath: '/run/secrets' });
    await admin.post('/projects/alpha/apps/files/secrets', { name: 'tls.bundle', data: { 'cert.pem': 'x' } });
    const vol = await admin.get('/projects/alpha/apps/files/pod-spec?container=api');
    expect(vol.body.podSpec).toEqual({
      volumes: [{ name: 'sigil-tls-bundle', secret: { secretName: 'tls.bundle', defaultMode: 0o400 } }],
      containers: [{ name: 'api', volumeMounts: [{ name: 'sigil-tls-bundle', mountPath: '/run/secrets/tls.bundle', readOnly: true }] }],
    });
  });

  it('paginates listings with limit and next', async () => {
    for (const n of ['p1', 'p2', 'p3']) await admin.post('/projects', { name: `page-${n}` });
    const first = await admin.get('/projects?limit=2');
    expect(first.body.items.map((p: any) => p.name)).toEqual(['alpha', 'beta']);
    const second = await admin.get(`/projects?limit=2&after=${first.body.next}`);
    expect(second.body.items.map((p: any) => p.name)).toEqual(['page-p1', 'page-p2']);
    const last = await admin.get(`/projects?limit=2&after=${second.body.next}`);
    expect(last.body).toMatchObject({ items: [{ name: 'page-p3' }], next: null });
  });

  it('manages clusters and one-time enrollment tokens', async () => {
    const c = await admin.post('/clusters', { name: 'store-0042', labels: { region: 'eu-west', tier: 'store' } });
    expect(c.status).toBe(201);
    expect(c.body).toMatchObject({ state: 'registered', labels: { region: 'eu-west', tier: 'store' } });
    expect((await admin.patch('/clusters/store-0042', { labels: { region: 'eu-west' } }, { 'If-Match': '"1"' })).body.labels).toEqual({
      region: 'eu-west',
    });
    expect((await admin.get('/clusters?labels=region=eu-west')).body.items.map((x: any) => x.name)).toEqual(['store-0042']);
    expect((await admin.get('/clusters?labels=region=us')).body.items).toEqual([]);
    expect((await admin.post('/clusters/store-0042/disable')).body.state).toBe('disabled');
    expect((await admin.post('/clusters/store-0042/enrollment-tokens', { ttlSeconds: 600 })).body.code).toBe('cluster_disabled');
    expect((await admin.post('/clusters/store-0042/enable')).body.state).toBe('registered');
    const t = await admin.post('/clusters/store-0042/enrollment-tokens', { ttlSeconds: 600 });
    expect(t.status).toBe(201);
    expect(t.headers.get('cache-control')).toBe('no-store');
    expect(t.body.token).toMatch(/^sge_[A-Za-z0-9_-]{43}$/);
    expect(new Date(t.body.expiresAt).getTime() - Date.now()).toBeGreaterThan(590_000);
    expect((await admin.delete('/clusters/store-0042')).status).toBe(204);
  });
});

describe('apps: delivery mode inject', () => {
  const apps = '/projects/alpha/apps';
  const consumers = [
    { namespace: 'alpha-ns', serviceAccount: 'checkout' },
    { namespace: 'alpha-ns', serviceAccount: '*' },
  ];

  it('creates an inject app only with consumers, and keeps them', async () => {
    const none = await admin.post(apps, { name: 'inj-none', namespace: 'alpha-ns', deliveryMode: 'inject' });
    expect([none.status, none.body.code]).toEqual([400, 'consumers_required']);
    expect(none.body.errors).toEqual([{ field: 'consumers', problem: expect.stringContaining('inject') }]);
    const empty = await admin.post(apps, { name: 'inj-none', namespace: 'alpha-ns', deliveryMode: 'inject', consumers: [] });
    expect(empty.body.code).toBe('consumers_required');
    expect((await admin.get(`${apps}/inj-none`)).status).toBe(404);

    const created = await admin.post(apps, { name: 'inj', namespace: 'alpha-ns', deliveryMode: 'inject', consumers });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: 'inj', deliveryMode: 'inject', consumers });
    expect((await admin.get(`${apps}/inj`)).body.consumers).toEqual(consumers);
    // env and volume apps may carry consumers (unused until they switch) or none.
    expect((await admin.post(apps, { name: 'env-kept', namespace: 'alpha-ns', deliveryMode: 'env', consumers })).body.consumers).toEqual(
      consumers,
    );
    expect((await admin.get(`${apps}/web`)).body.consumers).toEqual([]);
  });

  it.each([
    ['a service account that is not a DNS-1123 subdomain', [{ namespace: 'alpha-ns', serviceAccount: 'Web_1' }]],
    ['a namespace that is not a DNS-1123 label', [{ namespace: 'alpha.ns', serviceAccount: '*' }]],
    ['a duplicate', [consumers[0], consumers[1], consumers[0]]],
    ['more than 64', Array.from({ length: 65 }, (_, i) => ({ namespace: `ns-${i}`, serviceAccount: '*' }))],
    ['a string instead of an object', ['alpha-ns/checkout']],
    ['an unknown field', [{ ...consumers[0], pod: 'x' }]],
    ['null', null],
  ])('refuses consumers with %s (validation_failed)', async (_what, bad) => {
    const r = await admin.post(apps, { name: 'inj-bad', namespace: 'alpha-ns', deliveryMode: 'inject', consumers: bad });
    expect([r.status, r.body.code]).toEqual([400, 'validation_failed']);
    expect(r.body.errors.map((e: any) => e.field)).toEqual(['consumers']);
  });

  it('refuses consumers in a namespace the project does not hold, and keeps a consumer namespace from being dropped', async () => {
    const elsewhere = await admin.post(apps, {
      name: 'inj-far',
      namespace: 'alpha-ns',
      deliveryMode: 'inject',
      consumers: [{ namespace: 'beta-ns', serviceAccount: '*' }],
    });
    expect([elsewhere.status, elsewhere.body.code]).toEqual([403, 'namespace_not_granted']);
    expect(elsewhere.body.detail).toContain('beta-ns');
    expect((await admin.get(`${apps}/inj-far`)).status).toBe(404);
    const patched = await admin.patch(`${apps}/inj`, { consumers: [{ namespace: 'beta-ns', serviceAccount: 'x' }] });
    expect([patched.status, patched.body.code]).toEqual([403, 'namespace_not_granted']);

    expect((await admin.post('/projects', { name: 'gamma' })).status).toBe(201);
    expect((await admin.put('/projects/gamma/namespaces', { namespaces: ['gamma-ns', 'gamma-pods'] })).status).toBe(200);
    const app = {
      name: 'pay',
      namespace: 'gamma-ns',
      deliveryMode: 'inject',
      consumers: [{ namespace: 'gamma-pods', serviceAccount: '*' }],
    };
    expect((await admin.post('/projects/gamma/apps', app)).status).toBe(201);
    const dropped = await admin.put('/projects/gamma/namespaces', { namespaces: ['gamma-ns'] });
    expect([dropped.status, dropped.body.code]).toEqual([409, 'namespace_in_use']);
    expect(dropped.body.detail).toContain('gamma-pods');
  });

  it('a consumer added while its namespace is dropped: one of the two is refused, never both accepted', async () => {
    expect((await admin.post('/projects', { name: 'delta' })).status).toBe(201);
    for (let round = 0; round < 8; round++) {
      expect((await admin.put('/projects/delta/namespaces', { namespaces: ['delta-ns', 'delta-pods'] })).status).toBe(200);
      const appName = `pay-${round}`;
      expect((await admin.post('/projects/delta/apps', { name: appName, namespace: 'delta-ns', deliveryMode: 'env' })).status).toBe(201);
      const [added, dropped] = await Promise.all([
        admin.patch(`/projects/delta/apps/${appName}`, {
          deliveryMode: 'inject',
          consumers: [{ namespace: 'delta-pods', serviceAccount: '*' }],
        }),
        admin.put('/projects/delta/namespaces', { namespaces: ['delta-ns'] }),
      ]);
      const held = (await admin.get('/projects/delta/namespaces')).body.namespaces as string[];
      const consumers = (await admin.get(`/projects/delta/apps/${appName}`)).body.consumers as Array<{ namespace: string }>;
      // The invariant: a consumer's namespace is always one the project holds.
      if (consumers.some((c) => c.namespace === 'delta-pods')) expect(held).toContain('delta-pods');
      expect([added.status, dropped.status].sort()).toEqual(added.status === 200 ? [200, 409] : [200, 403]);
      if (added.status === 200) await admin.patch(`/projects/delta/apps/${appName}`, { deliveryMode: 'env', consumers: [] });
    }
  });

  it('PATCH switches a mode and replaces consumers; inject always keeps at least one', async () => {
    expect((await admin.post(apps, { name: 'switch', namespace: 'alpha-ns', deliveryMode: 'env' })).status).toBe(201);
    const bare = await admin.patch(`${apps}/switch`, { deliveryMode: 'inject' });
    expect([bare.status, bare.body.code]).toEqual([400, 'consumers_required']);
    expect((await admin.get(`${apps}/switch`)).body).toMatchObject({ deliveryMode: 'env', version: 1 });

    const switched = await admin.patch(`${apps}/switch`, { deliveryMode: 'inject', consumers: [consumers[0]] }, { 'If-Match': '"1"' });
    expect(switched.status).toBe(200);
    expect(switched.body).toMatchObject({ deliveryMode: 'inject', consumers: [consumers[0]], version: 2 });
    expect((await admin.patch(`${apps}/switch`, { consumers: [] })).body.code).toBe('consumers_required');
    expect((await admin.patch(`${apps}/switch`, { consumers })).body.consumers).toEqual(consumers);
    // Back to env: the consumers stay (unused), so switching again needs no new list.
    const back = await admin.patch(`${apps}/switch`, { deliveryMode: 'env' });
    expect(back.body).toMatchObject({ deliveryMode: 'env', consumers });
    expect((await admin.patch(`${apps}/switch`, { deliveryMode: 'inject' })).body.deliveryMode).toBe('inject');
    expect((await admin.patch(`${apps}/switch`, { deliveryMode: 'sidecar' })).body.code).toBe('validation_failed');
  });

  it('audits the delivery mode and consumers of a created or changed app (names only)', async () => {
    const events = (await admin.get('/audit?limit=500')).body.items as Array<{ action: string; outcome: string; target: string }>;
    const created = events.find((e) => e.action === 'app.create' && e.outcome === 'success' && e.target.includes('app=inj '));
    expect(created?.target).toBe('project=alpha app=inj namespace=alpha-ns deliveryMode=inject consumers=alpha-ns/checkout,alpha-ns/*');
    const updates = events.filter(
      (e) => e.action === 'app.update' && e.outcome === 'success' && e.target.startsWith('project=alpha app=switch '),
    );
    expect(updates.map((e) => e.target)).toContain(
      'project=alpha app=switch namespace=alpha-ns deliveryMode=env consumers=alpha-ns/checkout,alpha-ns/*',
    );
  });

  it('renders the pod annotations instead of a pod spec for an inject app', async () => {
    await admin.post(`${apps}/inj/secrets`, { name: 'inj-db', data: { URL: 'x' } });
    const r = await admin.get(`${apps}/inj/pod-spec`);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      deliveryMode: 'inject',
      podSpec: {},
      annotations: { 'sigil.dev/inject': 'inj' },
      note: expect.stringContaining('metadata.annotations'),
    });
  });

  it('lists consumption to project viewers (empty before any grant), nothing of another project', async () => {
    const r = await tokens.viewerAlpha!.get(`${apps}/inj/consumption`);
    expect([r.status, r.body]).toEqual([200, { items: [], next: null }]);
    const other = await tokens.viewerAlpha!.get('/projects/beta/apps/web/consumption');
    expect([other.status, other.body.code]).toEqual([404, 'project_not_found']);
    expect((await admin.get(`${apps}/nope/consumption`)).body.code).toBe('app_not_found');
    expect((await admin.get(`${apps}/inj/consumption?after=Not%20a%20cursor`)).body.code).toBe('invalid_cursor');
  });
});

describe('roles and project scope', () => {
  it('a token scoped to one project sees nothing of another (404, no data)', async () => {
    for (const t of [tokens.operatorAlpha!, tokens.pipelineAlpha!, tokens.viewerAlpha!]) {
      expect((await t.get('/projects')).body.items.map((p: any) => p.name)).toEqual(['alpha']);
      for (const path of [
        '/projects/beta',
        '/projects/beta/apps',
        '/projects/beta/apps/web',
        '/projects/beta/apps/web/secrets',
        '/projects/beta/apps/web/secrets/web-env',
        '/projects/beta/apps/web/pod-spec',
      ]) {
        const r = await t.get(path);
        expect([r.status, r.body.code]).toEqual([404, 'project_not_found']);
        expect(r.text).not.toContain('beta-ns');
      }
      expect((await t.get('/projects/alpha/apps/web/secrets/web-env')).status).toBe(200);
    }
    const write = await tokens.operatorAlpha!.post('/projects/beta/apps', { name: 'x', namespace: 'x', deliveryMode: 'env' });
    expect(write.status).toBe(404);
    expect((await admin.get('/projects/beta/apps/x')).status).toBe(404);
  });

  const cases: Array<[string, string, string, string, unknown, number]> = [
    // [token, method, path, description, body, expected status]
    ['viewerAlpha', 'POST', '/projects/alpha/apps', 'create app', { name: 'v1', namespace: 'alpha-ns', deliveryMode: 'env' }, 403],
    ['viewerAlpha', 'PUT', '/projects/alpha/apps/web/secrets/web-env', 'write secret', { data: { A: 'b' } }, 403],
    ['viewerAll', 'GET', '/projects/beta/apps/web/secrets', 'read any project', undefined, 200],
    ['viewerAll', 'GET', '/audit', 'read audit', undefined, 200],
    ['viewerAll', 'GET', '/tokens', 'list tokens', undefined, 403],
    ['pipelineAlpha', 'GET', '/projects/alpha/apps/web/secrets', 'read metadata', undefined, 200],
    ['pipelineAlpha', 'PUT', '/projects/alpha/apps/web/secrets/web-env', 'write secret', { data: { A: 'b' } }, 403],
    ['pipelineAlpha', 'GET', '/audit', 'read audit', undefined, 403],
    ['operatorAlpha', 'POST', '/projects/alpha/apps', 'create app', { name: 'op-app', namespace: 'alpha-ns', deliveryMode: 'env' }, 201],
    ['operatorAlpha', 'PUT', '/projects/alpha/apps/web/secrets/web-env', 'write secret', { data: { API_KEY: 'rotated' } }, 200],
    ['operatorAlpha', 'POST', '/projects', 'create project', { name: 'nope' }, 403],
    ['operatorAlpha', 'DELETE', '/projects/alpha', 'delete project', undefined, 403],
    ['operatorAlpha', 'POST', '/clusters', 'register cluster', { name: 'nope' }, 403],
    ['operatorAlpha', 'GET', '/clusters', 'list clusters', undefined, 200],
    ['operatorAlpha', 'POST', '/tokens', 'create token', { name: 'x', role: 'admin' }, 403],
    ['operatorAlpha', 'GET', '/audit/verify', 'verify audit', undefined, 403],
    [
      'operatorAll',
      'POST',
      '/projects/beta/apps',
      'create app anywhere',
      { name: 'op-all', namespace: 'beta-ns', deliveryMode: 'env' },
      201,
    ],
    ['operatorAll', 'POST', '/clusters/x/enrollment-tokens', 'enrollment token', {}, 403],
  ];
  it.each(cases)('%s: %s %s (%s) %j → %i', async (who, method, path, _what, body, status) => {
    const r = await tokens[who]!.request(method, path, body);
    expect(r.status).toBe(status);
    if (status >= 400) {
      expect(r.headers.get('content-type')).toContain('application/problem+json');
      expect(r.body.code).toBe(status === 403 ? 'forbidden' : 'project_not_found');
    }
  });

  it('admin tokens cannot be project-scoped; revoked tokens stop working at once', async () => {
    expect((await admin.post('/tokens', { name: 'x', role: 'admin', project: 'alpha' })).body.code).toBe('admin_token_scoped');
    // Sigil's own actors (system:rotation) cannot be impersonated by a token's name.
    const impostor = await admin.post('/tokens', { name: 'system:rotation', role: 'operator' });
    expect([impostor.status, impostor.body.code]).toEqual([400, 'validation_failed']);
    const r = await admin.post('/tokens', { name: 'short-lived', role: 'viewer' });
    const t = admin.as(r.body.token);
    expect((await t.get('/projects')).status).toBe(200);
    expect((await admin.delete(`/tokens/${r.body.id}`)).status).toBe(204);
    const after = await t.get('/projects');
    expect([after.status, after.body.code]).toEqual([401, 'unauthenticated']);
    expect((await admin.get('/tokens')).text).not.toContain(r.body.token);
  });

  it('operators see only their project in the audit log', async () => {
    const events = (await tokens.viewerAlpha!.get('/audit?limit=500')).body.items;
    expect(events.length).toBeGreaterThan(0);
    expect(events.every((e: any) => (e.target ?? '').includes('project=alpha'))).toBe(true);
  });
});

describe('rate limiting', () => {
  it('answers 429 with Retry-After once a token exceeds its burst', async () => {
    const r = await admin.post('/tokens', { name: 'hammer', role: 'viewer' });
    const t = admin.as(r.body.token);
    // The bucket holds 100 and refills 50/s (the defaults), so however slow this machine is, a 429
    // must have come once more than 100 + 50 × elapsed requests were answered.
    const [burst, perSecond] = [100, 50];
    const started = Date.now();
    let answered = 0;
    let limited: ApiResponse<any>[] = [];
    while (limited.length === 0 && Date.now() - started < 30_000) {
      const batch = await Promise.all(Array.from({ length: 40 }, () => t.get('/projects/alpha')));
      answered += batch.length;
      limited = batch.filter((x) => x.status === 429);
      if (limited.length === 0) expect(answered).toBeLessThanOrEqual(burst + perSecond * ((Date.now() - started) / 1000) + 40);
    }
    expect(limited.length).toBeGreaterThan(0);
    expect(limited[0]!.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(limited[0]!.body.code).toBe('rate_limited');
    expect((await admin.get('/projects/alpha')).status).toBe(200); // other tokens unaffected
  });

  it('limits failed authentications per client, and keeps such floods out of the audit chain', async () => {
    const before = (await admin.get('/audit?limit=500')).body.items.length;
    const failed = () => metricValue(s.cp.url, 'sigil_auth_failed_attempts_total', { action: 'project.create', status: '401' });
    const counted = await failed();
    const bad = admin.as('sgl_definitely-not-a-token-0000000000');
    const statuses = await Promise.all(Array.from({ length: 60 }, () => bad.post('/projects', { name: 'x' }).then((r) => r.status)));
    const unauthorized = statuses.filter((x) => x === 401).length;
    expect(unauthorized).toBeLessThanOrEqual(25);
    expect(statuses.filter((x) => x === 429).length).toBeGreaterThanOrEqual(35);
    // Counted after each response is sent: once all are, whatever they wrote is written.
    await eventually('the refusals counted', async () => holds((await failed()) >= counted + unauthorized));
    const after = (await admin.get('/audit?limit=500')).body.items.length;
    expect(after - before).toBeLessThanOrEqual(25);
  });
});
