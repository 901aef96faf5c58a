import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { EmbeddedRedis } from '../../apps/control-plane/src/embedded/embedded-redis.js';
import { ControlPlaneProcess, REPO_ROOT, hsmEnv } from '../harness/control-plane-process.js';
import { createTestDatabase } from '../harness/test-env.js';

interface ReadyBody {
  status: string;
  failed: string[];
  checks: Record<string, { ok: boolean; detail: unknown }>;
}

async function readyz(url: string): Promise<{ status: number; body: ReadyBody }> {
  const res = await fetch(`${url}/readyz`);
  return { status: res.status, body: (await res.json()) as ReadyBody };
}

/** Polls /readyz until `predicate` holds; returns how long that took. */
async function until(url: string, predicate: (r: { status: number; body: ReadyBody }) => boolean, timeoutMs: number): Promise<number> {
  const started = Date.now();
  for (;;) {
    const r = await readyz(url);
    if (predicate(r)) return Date.now() - started;
    if (Date.now() - started > timeoutMs)
      throw new Error(`readyz still ${r.status} ${JSON.stringify(r.body.failed)} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('control plane against real PostgreSQL, Redis and SoftHSM', () => {
  let dir: string;
  let redis: EmbeddedRedis;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let cp: ControlPlaneProcess;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'sigil-ready-'));
    // A Redis of its own: this test stops and restarts it.
    redis = new EmbeddedRedis({ dir: path.join(dir, 'redis'), durable: false });
    const redisUrl = await redis.start();
    db = await createTestDatabase();
    cp = await ControlPlaneProcess.start({
      SIGIL_DATA_DIR: dir,
      DATABASE_URL: db.url,
      REDIS_URL: redisUrl,
      SIGIL_BOOTSTRAP_ADMIN_TOKEN: 'sgl_e2e-bootstrap-token-0123456789abcdef',
      ...hsmEnv(),
    });
  });

  afterAll(async () => {
    await cp?.stop();
    await redis?.stop();
    await db?.drop();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers /healthz and /readyz with every dependency checked', async () => {
    expect((await fetch(`${cp.url}/healthz`)).status).toBe(200);
    const { status, body } = await readyz(cp.url);
    expect(status).toBe(200);
    expect(body.failed).toEqual([]);
    expect(Object.keys(body.checks).sort()).toEqual(['hsm', 'postgres', 'redis']);
    expect(body.checks.hsm!.detail).toMatchObject({ tokenLabel: 'sigil-test', mechanisms: { 'AES-GCM': true, 'AES-KEY-WRAP-PAD': true } });
  });

  it('turns 503 naming Redis within 5 s of Redis stopping, and 200 again once it is back', async () => {
    await redis.stop();
    const down = await until(cp.url, (r) => r.status === 503 && r.body.failed.includes('redis'), 5_000);
    const { body } = await readyz(cp.url);
    expect(body.failed).toEqual(['redis']);
    expect(body.checks.postgres!.ok).toBe(true);
    expect(down).toBeLessThan(5_000);
    // The REST API still answers what PostgreSQL holds; what only Redis knows is said unknown.
    const auth = { authorization: 'Bearer sgl_e2e-bootstrap-token-0123456789abcdef', 'content-type': 'application/json' };
    const registered = await fetch(`${cp.url}/api/v1/clusters`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ name: 'while-redis-is-away' }),
    });
    expect(registered.status).toBe(201);
    expect(await registered.json()).toMatchObject({ name: 'while-redis-is-away', agentConnected: null });

    await redis.start();
    const up = await until(cp.url, (r) => r.status === 200, 10_000);
    expect(up).toBeLessThan(10_000);
    expect(cp.child.exitCode).toBeNull(); // recovered without a restart
    const listed = await fetch(`${cp.url}/api/v1/clusters/while-redis-is-away`, { headers: auth });
    expect(await listed.json()).toMatchObject({ agentConnected: false });
  });

  it('serves Prometheus metrics including dependency state', async () => {
    const res = await fetch(`${cp.url}/metrics`);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    expect(text).toMatch(/^sigil_dependency_up\{dependency="redis",app="sigil-control-plane"\} 1$/m);
    expect(text).toContain('process_resident_memory_bytes');
    expect(text).toContain('sigil_http_request_duration_seconds_bucket');
  });

  it('publishes the OpenAPI document and Swagger UI', async () => {
    // Public on purpose: agents fetch the CA they must trust before they have any credential.
    const PUBLIC_OPERATIONS = ['get /api/v1/agents/trust', 'post /api/v1/console/session'];
    // The console's session itself is reached by its cookie only (decision 021).
    const COOKIE_ONLY = ['get /api/v1/console/session', 'delete /api/v1/console/session'];
    const COOKIE = { '__Host-sigil_session': [] };
    const doc = (await (await fetch(`${cp.url}/api/docs-json`)).json()) as { openapi: string; paths: Record<string, unknown> };
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/healthz',
        '/readyz',
        '/api/v1/projects',
        '/api/v1/projects/{project}/apps/{app}/secrets/{secret}',
        '/api/v1/projects/{project}/apps/{app}/secrets/{secret}/rollback',
        '/api/v1/projects/{project}/apps/{app}/pod-spec',
        '/api/v1/clusters/{cluster}/enrollment-tokens',
        '/api/v1/tokens',
        '/api/v1/audit/verify',
      ]),
    );
    // Every API operation documents its token and its problem+json errors.
    const full = doc as unknown as {
      paths: Record<string, Record<string, { security?: unknown[]; responses: Record<string, unknown> }>>;
      components: { schemas: Record<string, any> };
    };
    for (const [path, ops] of Object.entries(full.paths).filter(([p]) => p.startsWith('/api/v1/'))) {
      for (const [method, op] of Object.entries(ops)) {
        const isPublic = PUBLIC_OPERATIONS.includes(`${method} ${path}`);
        const security = isPublic ? undefined : COOKIE_ONLY.includes(`${method} ${path}`) ? [COOKIE] : [{ bearer: [] }, COOKIE];
        expect([`${method} ${path}`, op.security]).toEqual([`${method} ${path}`, security]);
        if (isPublic) continue;
        expect(Object.keys(op.responses)).toEqual(expect.arrayContaining(['400', '401', '403', '404']));
      }
    }
    expect(full.components.schemas.ProblemView.properties.code).toBeDefined();
    expect(full.components.schemas.CreateSecretDto.properties.data.writeOnly).toBe(true);
    const ui = await fetch(`${cp.url}/api/docs`);
    expect(ui.status).toBe(200);
    expect(await ui.text()).toContain('swagger');
  });

  it('answers unknown paths with problem+json and echoes a well-formed request id', async () => {
    for (const p of ['/api/v1/nope', '/nope']) {
      const res = await fetch(`${cp.url}${p}`, { headers: { 'X-Request-Id': 'req-123' } });
      expect(res.status).toBe(404);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
      expect(((await res.json()) as { code: string }).code).toBe('not_found');
    }
    const res = await fetch(`${cp.url}/healthz`, { headers: { 'X-Request-Id': 'bad id with spaces' } });
    expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('is reported ready by `sigil health`', () => {
    const r = spawnSync(process.execPath, ['dist/apps/cli/src/main.js', 'health', '--server', cp.url, '-o', 'json'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
    });
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 'ready', failed: [] });
  });

  it('writes JSON logs with request ids and never the bootstrap token', () => {
    const lines = cp.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.length).toBeGreaterThan(3);
    const request = lines.find((l) => (l.req as { url?: string } | undefined)?.url === '/api/v1/nope');
    expect(request).toMatchObject({ req: { id: 'req-123', method: 'GET' }, res: { statusCode: 404 } });
    expect(cp.logs()).not.toContain('sgl_e2e-bootstrap-token');
  });
});
