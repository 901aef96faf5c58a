import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { ApiClient, type ApiResponse } from '../harness/api-client.js';
import { ControlPlaneProcess } from '../harness/control-plane-process.js';
import { createTestDatabase, testEnv, uniqueName } from '../harness/test-env.js';

// Real outages under the REST API: the database pool exhausted (every connection stuck behind a
// lock this test holds), and the HSM's token gone (its SoftHSM token directory removed). Both
// are 503 with Retry-After and a machine-readable code, never a 500, and nothing half-written.

const ADMIN = `sgl_e2e-admin-${'5'.repeat(32)}`;
/** PlacementRepository's membership lock (delivery/placement.repository.ts): every publish waits for it inside its transaction. */
const MEMBERSHIP_LOCK = 0x5161_0005;
/** The control plane's pool size (database/data-source.ts). */
const POOL_MAX = 20;

let dir: string;
let database: Awaited<ReturnType<typeof createTestDatabase>>;
let cp: ControlPlaneProcess;
let api: ApiClient;
let db: pg.Client;

function expectUnavailable(r: ApiResponse<{ code?: string } | undefined>, code: string): void {
  expect([r.status, r.body?.code]).toEqual([503, code]);
  expect(r.headers.get('content-type')).toContain('application/problem+json');
  expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
  expect(r.text).not.toMatch(/stack|at .*\.js/);
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'sigil-unavailable-'));
  database = await createTestDatabase();
  // No PKCS#11 variables: the control plane makes its own SoftHSM token under dir/softhsm,
  // which this test may break without touching anyone else's.
  cp = await ControlPlaneProcess.start({
    SIGIL_DATA_DIR: dir,
    DATABASE_URL: database.url,
    REDIS_URL: testEnv().redis.url,
    SIGIL_REDIS_PREFIX: uniqueName('u').replace(/-/g, ''),
    SIGIL_BOOTSTRAP_ADMIN_TOKEN: ADMIN,
    SIGIL_HSM_POOL_SIZE: '1',
  });
  api = new ApiClient(cp.url, ADMIN);
  db = new pg.Client({ connectionString: database.url });
  await db.connect();
  expect((await api.post('/projects', { name: 'shop' })).status).toBe(201);
  expect((await api.put('/projects/shop/cluster-selector', { selector: {} })).status).toBe(204);
  expect((await api.put('/projects/shop/namespaces', { namespaces: ['shop'] })).status).toBe(200);
  expect((await api.post('/projects/shop/apps', { name: 'web', namespace: 'shop', deliveryMode: 'env' })).status).toBe(201);
  expect((await api.post('/projects/shop/apps/web/secrets', { name: 'env', data: { API_KEY: 'v1-7f3a9c' } })).status).toBe(201);
  expect((await api.post('/clusters', { name: 'store-1' })).status).toBe(201);
});

afterAll(async () => {
  await db?.end();
  await cp?.stop();
  await database?.drop();
  await rm(dir, { recursive: true, force: true });
});

describe('REST under dependency outages', () => {
  it('an exhausted database pool is 503 busy with Retry-After, and the API recovers by itself', async () => {
    await db.query('BEGIN');
    await db.query('SELECT pg_advisory_xact_lock($1)', [MEMBERSHIP_LOCK]);
    // Each publish holds a pooled connection while it waits for the lock held above.
    const publishes: Array<Promise<ApiResponse<{ code?: string }>>> = Array.from({ length: POOL_MAX + 5 }, () =>
      api.post('/projects/shop/apps/web/publish', { clusters: ['store-1'] }),
    );
    try {
      // Once every pooled connection waits there, any request times out acquiring one (2 s).
      const until = Date.now() + 20_000;
      let busy = await api.get('/projects/shop/apps/web/secrets/env');
      while (busy.status === 200 && Date.now() < until) busy = await api.get('/projects/shop/apps/web/secrets/env');
      expectUnavailable(busy, 'busy');
    } finally {
      await db.query('COMMIT');
    }
    const answers = await Promise.all(publishes);
    // Each either went through once the lock was free or was told to retry; none failed as a 500.
    for (const r of answers) expect([200, 503]).toContain(r.status);
    for (const r of answers.filter((x) => x.status === 503)) {
      // Refused before anything changed: by the pool, or by the audit record written first.
      expectUnavailable(r, r.body.code === 'audit_unavailable' ? 'audit_unavailable' : 'busy');
    }
    expect((await api.get('/projects/shop/apps/web/secrets/env')).status).toBe(200);
    expect(cp.logs()).not.toContain('v1-7f3a9c'); // no value in what was logged meanwhile
  }, 60_000);

  it('an HSM whose token is gone is 503 hsm_unavailable with Retry-After, and nothing is half-written', async () => {
    const tokens = path.join(dir, 'softhsm', 'tokens');
    expect((await readdir(tokens)).length).toBeGreaterThan(0);
    await rm(tokens, { recursive: true, force: true });

    const update = await api.put('/projects/shop/apps/web/secrets/env', { data: { API_KEY: 'v2-7f3a9c' } });
    expectUnavailable(update, 'hsm_unavailable');
    const create = await api.post('/projects/shop/apps/web/secrets', { name: 'db', data: { URL: 'postgres://x' } });
    expectUnavailable(create, 'hsm_unavailable');

    // The database still answers: no version 2, no secret "db".
    const current = await api.get('/projects/shop/apps/web/secrets/env');
    expect(current.body).toMatchObject({ currentVersion: 1, latestVersion: 1 });
    expect((await api.get('/projects/shop/apps/web/secrets/env/versions')).body).toHaveLength(1);
    expect((await api.get('/projects/shop/apps/web/secrets/db')).status).toBe(404);
    const rows = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM secret_versions`);
    expect(rows.rows[0]!.n).toBe(1);
    expect(cp.logs()).not.toContain('v2-7f3a9c');
  });
});
