import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Redis } from 'ioredis';
import pg from 'pg';
import { ApiClient } from '../harness/api-client.js';
import { selfSigned } from '../harness/certificates.js';
import { startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import { testEnv } from '../harness/test-env.js';
import { eventually, holds } from '../harness/eventually.js';
import { metricValue } from '../harness/metrics.js';

let s: RunningControlPlane;
let admin: ApiClient;

async function sql<T = any>(query: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: s.databaseUrl });
  await c.connect();
  try {
    return (await c.query(query, params)).rows as T[];
  } finally {
    await c.end();
  }
}

const counts = () =>
  sql<{ t: string; n: string }>(
    `SELECT 'projects' t, count(*)::text n FROM projects UNION ALL SELECT 'apps', count(*)::text FROM apps
     UNION ALL SELECT 'secrets', count(*)::text FROM secrets UNION ALL SELECT 'versions', count(*)::text FROM secret_versions
     UNION ALL SELECT 'sealed', count(*)::text FROM sealed_values UNION ALL SELECT 'clusters', count(*)::text FROM clusters
     UNION ALL SELECT 'tokens', count(*)::text FROM api_tokens UNION ALL SELECT 'placements', count(*)::text FROM placements
     UNION ALL SELECT 'cluster_apps', count(*)::text FROM cluster_apps
     UNION ALL SELECT 'selectors', count(*)::text FROM projects WHERE cluster_selector IS NOT NULL`,
  );

beforeAll(async () => {
  s = await startControlPlane();
  admin = s.admin;
  expect((await admin.post('/projects', { name: 'shop' })).status).toBe(201);
  expect((await admin.put('/projects/shop/namespaces', { namespaces: ['shop'] })).status).toBe(200);
  expect((await admin.post('/projects/shop/apps', { name: 'web', namespace: 'shop', deliveryMode: 'env' })).status).toBe(201);
  expect((await admin.post('/projects/shop/apps/web/secrets', { name: 'existing', data: { A: 'b' } })).status).toBe(201);
});
afterAll(async () => {
  await s?.stop();
});

const SECRETS = '/projects/shop/apps/web/secrets';
const PUBLISH = '/projects/shop/apps/web';
const big = (bytes: number) => 'x'.repeat(bytes);

describe('hostile and malformed input', () => {
  const cases: Array<[string, string, string, unknown, Record<string, string>?]> = [
    ['uppercase name', 'POST', '/projects', { name: 'Shop' }],
    ['name too long', 'POST', '/projects', { name: 'a'.repeat(64) }],
    ['empty name', 'POST', '/projects', { name: '' }],
    ['SQL in name', 'POST', '/projects', { name: "x'; DROP TABLE projects;--" }],
    ['script in name', 'POST', '/projects', { name: '<script>alert(1)</script>' }],
    ['path traversal in name', 'POST', '/projects', { name: '../etc' }],
    ['unicode lookalike in name', 'POST', '/projects', { name: 'shоp' }], // Cyrillic о
    ['zero-width space in name', 'POST', '/projects', { name: 'sh\u200bop' }],
    ['NUL in name', 'POST', '/projects', { name: 'sh\u0000op' }],
    ['RTL override in name', 'POST', '/projects', { name: '\u202eshop' }],
    ['name is a number', 'POST', '/projects', { name: 123 }],
    ['name is an object', 'POST', '/projects', { name: { $ne: null } }],
    ['missing name', 'POST', '/projects', {}],
    ['unknown field', 'POST', '/projects', { name: 'ok-name', admin: true }],
    ['body is an array', 'POST', '/projects', [{ name: 'x' }]],
    ['body is a string', 'POST', '/projects', '"shop"'],
    ['broken JSON', 'POST', '/projects', '{"name": "a", hunter2'],
    ['not JSON content type', 'POST', '/projects', 'name=shop', { 'Content-Type': 'application/x-www-form-urlencoded' }],
    ['wrong delivery mode', 'POST', '/projects/shop/apps', { name: 'a', namespace: 'n', deliveryMode: 'ftp' }],
    ['namespace with dots', 'POST', '/projects/shop/apps', { name: 'a', namespace: 'kube.system', deliveryMode: 'env' }],
    ['relative mount path', 'POST', '/projects/shop/apps', { name: 'a', namespace: 'n', deliveryMode: 'volume', mountPath: 'etc/x' }],
    ['secret data is a string', 'POST', SECRETS, { name: 's1', data: 'A=b' }],
    ['secret value is a number', 'POST', SECRETS, { name: 's1', data: { A: 1 } }],
    ['secret without keys', 'POST', SECRETS, { name: 's1', data: {} }],
    ['invalid secret key', 'POST', SECRETS, { name: 's1', data: { 'bad key': 'v' } }],
    ['dot-dot secret key', 'POST', SECRETS, { name: 's1', data: { '..': 'v' } }],
    ['emoji secret key', 'POST', SECRETS, { name: 's1', data: { 'KEY🔑': 'v' } }],
    ['key in data and binaryData', 'POST', SECRETS, { name: 's1', data: { A: 'v' }, binaryData: { A: 'dg==' } }],
    ['binaryData not base64', 'POST', SECRETS, { name: 's1', binaryData: { A: 'not base64!' } }],
    ['secret name with underscore', 'POST', SECRETS, { name: 'my_secret', data: { A: 'v' } }],
    ['unknown secret type', 'POST', SECRETS, { name: 's1', type: 'helm.sh/release.v1', data: { A: 'v' } }],
    [
      'dockerconfigjson not JSON',
      'POST',
      SECRETS,
      { name: 's1', type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': '{auths' } },
    ],
    ['dockerconfigjson missing key', 'POST', SECRETS, { name: 's1', type: 'kubernetes.io/dockerconfigjson', data: { config: '{}' } }],
    ['tls missing key', 'POST', SECRETS, { name: 's1', type: 'kubernetes.io/tls', data: { 'tls.crt': 'x' } }],
    [
      'tls garbage certificate',
      'POST',
      SECRETS,
      { name: 's1', type: 'kubernetes.io/tls', data: { 'tls.crt': 'garbage', 'tls.key': 'garbage' } },
    ],
    ['value over 1 MiB in total', 'POST', SECRETS, { name: 's1', data: { A: big(600_000), B: big(600_000) } }],
    ['2 MiB value', 'POST', SECRETS, { name: 's1', data: { A: big(2 * 1024 * 1024) } }],
    ['rollback to a string version', 'POST', `${SECRETS}/existing/rollback`, { version: '1' }],
    ['rollback to version 0', 'POST', `${SECRETS}/existing/rollback`, { version: 0 }],
    ['If-Match garbage', 'PUT', `${SECRETS}/existing`, { data: { A: 'c' } }, { 'If-Match': 'yesterday' }],
    ['stale If-Match', 'PUT', `${SECRETS}/existing`, { data: { A: 'c' } }, { 'If-Match': '"99"' }],
    ['label value too long', 'POST', '/clusters', { name: 'c1', labels: { region: 'x'.repeat(64) } }],
    ['label value not a string', 'POST', '/clusters', { name: 'c1', labels: { canary: true } }],
    ['enrollment TTL too long', 'POST', '/clusters/nope/enrollment-tokens', { ttlSeconds: 10 ** 9 }],
    ['token id not a UUID', 'DELETE', '/tokens/1%20OR%201=1', undefined],
    ['unknown role', 'POST', '/tokens', { name: 'x', role: 'root' }],
    ['SQL in path', 'GET', "/projects/shop'%20OR%20'1'='1/apps", undefined],
    ['limit zero', 'GET', '/projects?limit=0', undefined],
    ['limit not a number', 'GET', '/projects?limit=ten', undefined],
    ['audit cursor not a number', 'GET', '/audit?before=1;DROP', undefined],
    ['bad label selector', 'GET', '/clusters?labels=region', undefined],
    ['NUL in a path name', 'GET', '/projects/sh%00op', undefined],
    ['NUL in a nested path name', 'PUT', `${SECRETS.replace('web', 'w%00eb')}/existing`, { data: { A: 'b' } }],
    ['invalid UTF-8 in a path', 'GET', '/projects/%FF%FE', undefined],
    ['very long path name', 'GET', `/projects/${'a'.repeat(5000)}`, undefined],
    ['NUL in a page cursor', 'GET', '/projects?after=a%00', undefined],
    ['NUL in an audit filter', 'GET', '/audit?action=secret%00', undefined],
    ['repeated query parameter', 'GET', '/projects?limit=1&limit=2', undefined],
    ['NUL in a description', 'POST', '/projects', { name: 'nul-description', description: 'a\u0000b' }],
    ['NUL in a token name', 'POST', '/tokens', { name: 'a\u0000b', role: 'viewer' }],
    ['publish without a target', 'POST', `${PUBLISH}/publish`, {}],
    ['publish clusters not a list', 'POST', `${PUBLISH}/publish`, { clusters: 'eu-1' }],
    ['publish to an invalid cluster name', 'POST', `${PUBLISH}/publish`, { clusters: ['EU_1'] }],
    ['publish to an unknown cluster', 'POST', `${PUBLISH}/publish`, { clusters: ['no-such-cluster'] }],
    ['selector with a bad operator', 'POST', `${PUBLISH}/publish`, { selector: { matchExpressions: [{ key: 'a', operator: 'Like' }] } }],
    ['selector In without values', 'POST', `${PUBLISH}/publish`, { selector: { matchExpressions: [{ key: 'a', operator: 'In' }] } }],
    ['selector with an unknown field', 'POST', `${PUBLISH}/publish`, { selector: { matchLabel: { a: 'b' } } }],
    ['selector label value too long', 'POST', `${PUBLISH}/publish`, { selector: { matchLabels: { a: 'x'.repeat(64) } } }],
    ['Idempotency-Key too long', 'POST', `${PUBLISH}/publish`, { selector: {} }, { 'Idempotency-Key': 'k'.repeat(200) }],
    ['unpublish clusters not a list', 'POST', `${PUBLISH}/unpublish`, { clusters: { a: 1 } }],
    ['wait too long', 'GET', `${PUBLISH}/publication?wait=9999`, undefined],
    ['wait not a number', 'GET', `${PUBLISH}/publication?wait=soon`, undefined],
    ['project selector not an object', 'PUT', '/projects/shop/cluster-selector', { selector: 'all' }],
    ['project selector missing', 'PUT', '/projects/shop/cluster-selector', {}],
    ['project selector bad key', 'PUT', '/projects/shop/cluster-selector', { selector: { matchLabels: { 'bad key': 'x' } } }],
  ];

  let before: Awaited<ReturnType<typeof counts>>;
  beforeAll(async () => {
    before = await counts();
  });

  // Every row has exactly five values: with fewer, Jest would take the last parameter for `done`.
  const rows = cases.map(([what, method, p, body, headers]) => [what, method, p, body, headers ?? {}] as const);
  it.each(rows)('%s → 4xx problem+json', async (_what, method, p, body, headers) => {
    const r = await admin.request(method, p, body, headers);
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.status).toBeLessThan(500);
    expect(r.headers.get('content-type')).toContain('application/problem+json');
    expect(r.body.code).toMatch(/^[a-z_]+$/);
    expect(r.body.status).toBe(r.status);
    expect(r.text).not.toContain('hunter2'); // nothing of the body is echoed
    expect(r.text).not.toMatch(/at \w+ \(|node_modules|QueryFailedError/); // no stack traces, no driver errors
  });

  it('wrote nothing', async () => {
    expect(await counts()).toEqual(before);
  });

  it('answers the specific codes a client can act on', async () => {
    expect((await admin.post(SECRETS, { name: 's1', data: { A: big(2 * 1024 * 1024) } })).body).toMatchObject({
      status: 413,
      code: 'payload_too_large',
    });
    expect((await admin.post(SECRETS, { name: 's1', data: { A: big(600_000), B: big(600_000) } })).body).toMatchObject({
      status: 413,
      code: 'secret_too_large',
    });
    expect((await admin.post('/projects', '{"name": ')).body).toMatchObject({ status: 400, code: 'malformed_json' });
    expect((await admin.post('/projects', 'x', { 'Content-Type': 'text/plain' })).body).toMatchObject({
      status: 415,
      code: 'unsupported_media_type',
    });
    const invalid = await admin.post(SECRETS, { name: 's1', data: { 'bad key': 'v', OK: 'v' } });
    expect(invalid.body).toMatchObject({ status: 400, code: 'invalid_secret', errors: [{ field: 'data.bad key' }] });
    expect((await admin.post('/projects', { name: 'shop' })).body).toMatchObject({ status: 409, code: 'project_exists' });
  });

  it('checks Kubernetes type rules: a TLS key must match its certificate', async () => {
    const tls = { ...selfSigned('sigil-test'), otherKey: selfSigned('sigil-test').key };
    const mismatch = await admin.post(SECRETS, {
      name: 'tls-bad',
      type: 'kubernetes.io/tls',
      data: { 'tls.crt': tls.cert, 'tls.key': tls.otherKey },
    });
    expect(mismatch.body).toMatchObject({
      status: 400,
      code: 'invalid_secret_type',
      errors: [{ field: 'data.tls.key', problem: 'does not match the certificate in tls.crt' }],
    });
    expect(mismatch.text).not.toContain('PRIVATE KEY');
    const ok = await admin.post(SECRETS, { name: 'tls-ok', type: 'kubernetes.io/tls', data: { 'tls.crt': tls.cert, 'tls.key': tls.key } });
    expect(ok.status).toBe(201);
    const docker = await admin.post(SECRETS, {
      name: 'pull',
      type: 'kubernetes.io/dockerconfigjson',
      data: { '.dockerconfigjson': '{"auths":{"registry.example":{"auth":"dTpw"}}}' },
    });
    expect(docker.status).toBe(201);
  });
});

describe('a stored value never comes back out', () => {
  const canary = `canary-${randomBytes(12).toString('hex')}`;
  const spellings = [canary, Buffer.from(canary).toString('base64'), Buffer.from(canary).toString('hex')];

  beforeAll(async () => {
    ApiClient.seen.length = 0;
    const created = await admin.post(SECRETS, { name: 'canary', data: { TOKEN: canary } });
    expect(created.status).toBe(201);
    await admin.put(`${SECRETS}/canary`, { data: { TOKEN: canary, OTHER: 'x' } });
    await admin.post(`${SECRETS}/canary/rollback`, { version: 1 });
    await admin.get(`${SECRETS}/canary`);
    await admin.get(`${SECRETS}/canary/versions`);
    await admin.get(SECRETS);
    await admin.get('/audit');
    await admin.post(SECRETS, { name: 'canary', data: { TOKEN: canary } }); // 409
    await admin.post(SECRETS, { name: 'Bad Name', data: { TOKEN: canary } }); // 400
    await admin.post(SECRETS, `{"name":"x","data":{"TOKEN":"${canary}"`); // malformed
  });

  it('in any response', () => {
    const all = ApiClient.seen.join('\n');
    expect(all).toContain('canary'); // the responses are there (the secret is named so)
    for (const sp of spellings) expect(all).not.toContain(sp);
  });

  it('in the logs', () => {
    for (const sp of spellings) expect(s.cp.logs()).not.toContain(sp);
  });

  it('in any database column', async () => {
    const tables = await sql<{ t: string }>("SELECT tablename t FROM pg_tables WHERE schemaname = 'public'");
    let dump = '';
    for (const { t } of tables)
      dump += (await sql<{ j: string }>(`SELECT row_to_json(x)::text j FROM "${t}" x`)).map((r) => r.j).join('\n');
    expect(dump).toContain('TOKEN');
    for (const sp of [...spellings, Buffer.from(canary).toString('hex')]) expect(dump).not.toContain(sp);
  });

  it('in Redis', async () => {
    const redis = new Redis(testEnv().redis.url);
    try {
      const keys = await redis.keys('*');
      let all = keys.join('\n');
      for (const k of keys) {
        const type = await redis.type(k);
        if (type === 'string') all += (await redis.get(k)) ?? '';
        else if (type === 'hash') all += JSON.stringify(await redis.hgetall(k));
        else if (type === 'list') all += (await redis.lrange(k, 0, -1)).join('\n');
      }
      for (const sp of spellings) expect(all).not.toContain(sp);
    } finally {
      redis.disconnect();
    }
  });
});

describe('the audit log', () => {
  it('recorded every mutating call with actor, outcome and request id', async () => {
    const events = (await admin.get('/audit?limit=500')).body.items as any[];
    const creates = events.filter((e) => e.action === 'secret.create');
    expect(creates.some((e) => e.outcome === 'success' && e.actor === 'bootstrap-admin' && e.status === 201)).toBe(true);
    expect(creates.some((e) => e.outcome === 'failed' && e.status === 409)).toBe(true);
    expect(events.some((e) => e.action === 'secret.rollback' && e.target === 'project=shop app=web secret=canary')).toBe(true);
    // Each authorised mutation is announced before it runs, then its outcome recorded.
    const done = creates.find((e) => e.outcome === 'success')!;
    expect(events.filter((e) => e.requestId === done.requestId).map((e) => e.outcome)).toEqual(['success', 'attempted']);
    const failedCreates = () => metricValue(s.cp.url, 'sigil_auth_failed_attempts_total', { action: 'project.create', status: '401' });
    const counted = await failedCreates();
    const denied = await admin.as('sgl_not-a-real-token-000000000000').post('/projects', { name: 'x' });
    expect(denied.status).toBe(401);
    // Recorded after the response is sent: once it is counted, whatever it wrote is written.
    await eventually('the denied call counted', async () => holds((await failedCreates()) > counted));
    // Without valid credentials it is counted into one record per window (tests/e2e/audit-flood), not chained alone.
    const latest = (await admin.get('/audit?limit=5')).body.items as any[];
    expect(latest.some((e) => e.requestId === denied.headers.get('x-request-id'))).toBe(false);
    expect(JSON.stringify(events)).not.toContain('canary-');
  });

  it('verifies, and detects an altered or deleted record', async () => {
    const ok = await admin.get('/audit/verify');
    expect(ok.body).toMatchObject({ ok: true });
    expect(ok.body.checked).toBeGreaterThan(20);

    const [victim] = await sql<{ seq: string }>("SELECT seq::text FROM audit_events WHERE action = 'secret.rollback' ORDER BY seq LIMIT 1");
    await sql("UPDATE audit_events SET actor_name = 'mallory' WHERE seq = $1", [victim!.seq]);
    expect((await admin.get('/audit/verify')).body).toMatchObject({
      ok: false,
      checked: Number(victim!.seq) - 1,
      brokenAt: victim!.seq,
      code: 'mac_mismatch',
      reason: 'record content does not match its HSM MAC',
    });
    await sql("UPDATE audit_events SET actor_name = 'bootstrap-admin' WHERE seq = $1", [victim!.seq]);
    expect((await admin.get('/audit/verify')).body.ok).toBe(true);

    await sql('DELETE FROM audit_events WHERE seq = $1', [victim!.seq]);
    const broken = await admin.get('/audit/verify');
    expect(broken.body).toMatchObject({ ok: false, reason: expect.stringContaining('link to the previous record') });
  });
});
