import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { runCli } from './cli.js';
import { EXIT } from './exit-codes.js';

/** A stand-in control plane on loopback: each test says how it answers; every request is recorded. */
interface Answer {
  status: number;
  body?: unknown;
  /** sent as is instead of JSON */
  raw?: string;
}
type Route = (req: { method: string; path: string; query: URLSearchParams; body: unknown; headers: IncomingMessage['headers'] }) => Answer;

let server: Server;
let url: string;
let routes: Record<string, Route>;
let seen: Array<{ method: string; path: string; body: unknown; authorization?: string; idempotencyKey?: string }>;

beforeAll(async () => {
  server = createServer((req, res) => {
    let text = '';
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', () => {
      const u = new URL(req.url ?? '/', 'http://x');
      const body = text ? (JSON.parse(text) as unknown) : undefined;
      seen.push({
        method: req.method ?? '',
        path: u.pathname,
        body,
        authorization: req.headers.authorization,
        idempotencyKey: req.headers['idempotency-key'] as string | undefined,
      });
      const route = routes[`${req.method} ${u.pathname}`];
      const a = route
        ? route({ method: req.method ?? '', path: u.pathname, query: u.searchParams, body, headers: req.headers })
        : problem(404, 'not_found', `no route ${req.method} ${u.pathname}`);
      const type = a.raw !== undefined ? 'text/html' : a.status >= 400 ? 'application/problem+json' : 'application/json';
      res.writeHead(a.status, { 'content-type': type });
      res.end(a.raw ?? (a.body === undefined ? '' : JSON.stringify(a.body)));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

beforeEach(() => {
  routes = {};
  seen = [];
});

function problem(status: number, code: string, detail: string, errors?: Array<{ field: string; problem: string }>): Answer {
  return { status, body: { type: 'about:blank', title: 'error', status, code, detail, ...(errors ? { errors } : {}) } };
}

/** Runs `sigil …` against the stand-in with a config file of its own; returns the exit code and output. */
async function sigil(args: string[], opts: { token?: string | null; stdin?: string; env?: Record<string, string> } = {}) {
  let stdout = '';
  let stderr = '';
  const dir = mkdtempSync(path.join(tmpdir(), 'sigil-cli-spec-'));
  const token = opts.token === undefined ? 'sgl_test-token' : opts.token;
  const code = await runCli(['node', 'sigil', ...args], {
    env: { SIGIL_CONFIG: path.join(dir, 'config.json'), SIGIL_SERVER: url, ...(token ? { SIGIL_TOKEN: token } : {}), ...opts.env },
    fetch: globalThis.fetch,
    stdin: Readable.from(opts.stdin === undefined ? [] : [Buffer.from(opts.stdin)]),
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
  });
  return { code, stdout, stderr, dir };
}

const publication = (states: Array<[string, string, string | null]>) => {
  const count = (s: string) => states.filter(([, st]) => st === s).length;
  return {
    project: 'shop',
    app: 'checkout',
    clusters: states.map(([c]) => c),
    selectors: [],
    excluded: [],
    summary: {
      clusters: states.length,
      pending: count('pending'),
      provisioned: count('provisioned'),
      failed: count('failed'),
      deprovisioning: count('deprovisioning'),
      deprovisioned: count('deprovisioned'),
      converged: count('pending') + count('deprovisioning') === 0,
    },
    deliveries: states.map(([cluster, state, reason]) => ({
      cluster,
      state,
      reason,
      desiredGeneration: '2',
      appliedGeneration: '1',
      since: '2026-12-02T00:00:00.000Z',
    })),
  };
};

describe('sigil exit codes', () => {
  it('exits 4 without a token, before any request', async () => {
    const r = await sigil(['projects', 'list'], { token: null });
    expect(r.code).toBe(EXIT.auth);
    expect(r.stderr).toContain('no API token');
    expect(seen).toEqual([]);
  });

  it('exits 3 when nothing listens at the server', async () => {
    const r = await sigil(['--server', 'http://127.0.0.1:9', 'projects', 'list']);
    expect(r.code).toBe(EXIT.unavailable);
    expect(r.stderr).toContain('cannot reach http://127.0.0.1:9');
  });

  it('exits 2 for a --server that is not a URL', async () => {
    const r = await sigil(['--server', 'not a url', 'projects', 'list']);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toContain('is not a URL');
  });

  it.each([
    [401, 'unauthenticated', EXIT.auth],
    [403, 'forbidden', EXIT.auth],
    [400, 'validation_failed', EXIT.usage],
    [404, 'project_not_found', EXIT.usage],
    [409, 'conflict', EXIT.usage],
    [429, 'rate_limited', EXIT.unavailable],
    [503, 'hsm_unavailable', EXIT.unavailable],
    [500, 'internal', EXIT.unavailable],
  ])('maps a %i problem (%s) to exit %i, quoting its detail and code', async (status, code, exit) => {
    routes['GET /api/v1/projects'] = () => problem(status, code, `refused with ${status}`);
    const r = await sigil(['projects', 'list']);
    expect(r.code).toBe(exit);
    expect(r.stderr).toBe(`sigil: refused with ${status} (${code})\n`);
  });

  it('lists the field problems of a validation error', async () => {
    routes['POST /api/v1/projects'] = () =>
      problem(400, 'validation_failed', 'invalid request', [{ field: 'name', problem: 'must be a DNS-1123 label' }]);
    const r = await sigil(['projects', 'create', 'Not_Valid']);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toBe('sigil: invalid request; name: must be a DNS-1123 label (validation_failed)\n');
  });

  it('names the status when the answer is not problem+json (a proxy’s 502 page)', async () => {
    routes['GET /api/v1/projects'] = () => ({ status: 502, raw: '<html>bad gateway</html>' });
    const r = await sigil(['projects', 'list']);
    expect(r.code).toBe(EXIT.unavailable);
    expect(r.stderr).toBe('sigil: HTTP 502\n');
  });

  it('exits 2 on a bad flag or argument, 0 on --help', async () => {
    expect((await sigil(['publish', 'shop', 'checkout', '--timeout', 'soon'])).code).toBe(EXIT.usage);
    expect((await sigil(['no-such-command'])).code).toBe(EXIT.usage);
    expect((await sigil(['root-keys', 'destroy', 'one'])).code).toBe(EXIT.usage);
    const help = await sigil(['--help']);
    expect(help.code).toBe(EXIT.ok);
    expect(help.stdout).toContain('5  with --wait: --timeout elapsed');
    expect(seen).toEqual([]);
  });

  it('health: exit 0 when ready, 3 naming what is not', async () => {
    routes['GET /readyz'] = () => ({ status: 200, body: { status: 'ok' } });
    expect(await sigil(['health'], { token: null })).toMatchObject({ code: EXIT.ok, stdout: 'ready\n' });
    routes['GET /readyz'] = () => ({ status: 503, body: { status: 'unavailable', failed: ['redis'] } });
    expect(await sigil(['health'], { token: null })).toMatchObject({ code: EXIT.unavailable, stdout: 'not ready: redis\n', stderr: '' });
  });
});

describe('sigil secrets set', () => {
  const base = '/api/v1/projects/shop/apps/checkout/secrets';

  it('creates the secret when the server answers secret_not_found, never sending a value anywhere else', async () => {
    routes[`PUT ${base}/db`] = () => problem(404, 'secret_not_found', 'secret "db" not found');
    routes[`POST ${base}`] = () => ({ status: 201, body: { name: 'db', currentVersion: 1 } });
    const r = await sigil(['secrets', 'set', 'shop', 'checkout', 'db', '--stdin', 'PASSWORD'], { stdin: 'stdin-canary' });
    expect(r).toMatchObject({ code: EXIT.ok, stdout: 'secret db: version 1 written (1 keys)\n' });
    expect(seen.map((s) => `${s.method} ${s.path}`)).toEqual([`PUT ${base}/db`, `POST ${base}`]);
    expect(seen[1]!.body).toEqual({ name: 'db', binaryData: { PASSWORD: Buffer.from('stdin-canary').toString('base64') } });
    expect(r.stdout + r.stderr).not.toContain('stdin-canary');
  });

  it('does not create anything when the app is missing (another not-found code)', async () => {
    routes[`PUT ${base}/db`] = () => problem(404, 'app_not_found', 'app "checkout" not found');
    const r = await sigil(['secrets', 'set', 'shop', 'checkout', 'db', '--from-literal', 'A=1']);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toContain('(app_not_found)');
    expect(seen.map((s) => s.method)).toEqual(['PUT']);
  });

  it('does not fall back on a message that merely mentions secret_not_found', async () => {
    routes[`PUT ${base}/db`] = () => problem(409, 'conflict', 'secret_not_found appears in this text only');
    const r = await sigil(['secrets', 'set', 'shop', 'checkout', 'db', '--from-literal', 'A=1']);
    expect(r.code).toBe(EXIT.usage);
    expect(seen.map((s) => s.method)).toEqual(['PUT']);
  });

  it('exits 2 without values, before any request', async () => {
    const r = await sigil(['secrets', 'set', 'shop', 'checkout', 'db']);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toContain('give values with');
    expect(seen).toEqual([]);
  });
});

describe('sigil secrets (generated)', () => {
  const base = '/api/v1/projects/shop/apps/checkout/secrets';
  const view = (over: Record<string, unknown> = {}) => ({
    name: 'db',
    type: 'Opaque',
    currentVersion: 1,
    latestVersion: 1,
    keys: ['API_KEY', 'PASSWORD'],
    generated: { keys: [{ key: 'API_KEY', kind: 'hex', length: 32 }] },
    rotateEveryDays: 30,
    nextRotationAt: '2027-01-01T00:00:00.000Z',
    lastRotatedAt: '2026-12-02T00:00:00.000Z',
    ...over,
  });

  it('create sends each --generate (an alphabet may hold ":") and --rotate-every in days', async () => {
    routes[`POST ${base}`] = () => ({ status: 201, body: view() });
    const r = await sigil([
      'secrets',
      'create',
      'shop',
      'checkout',
      'db',
      '--generate',
      'PASSWORD:password:32:ab:cd',
      '--generate',
      'API_KEY:hex:32',
      '--rotate-every',
      '30d',
    ]);
    expect(r).toMatchObject({ code: EXIT.ok });
    expect(r.stdout).toBe('secret db: version 1 generated (API_KEY, PASSWORD); rotates every 30 days, next at 2027-01-01T00:00:00.000Z\n');
    expect(seen[0]!.body).toEqual({
      name: 'db',
      generate: {
        keys: [
          { key: 'PASSWORD', kind: 'password', length: 32, alphabet: 'ab:cd' },
          { key: 'API_KEY', kind: 'hex', length: 32 },
        ],
        rotateEveryDays: 30,
      },
    });
  });

  it('create refuses a malformed --generate or --rotate-every before any request', async () => {
    for (const bad of [
      ['--generate', 'PASSWORD:password'],
      ['--generate', 'PASSWORD:uuid:32'],
      ['--generate', 'PASSWORD:password:32', '--rotate-every', '2w'],
    ]) {
      const r = await sigil(['secrets', 'create', 'shop', 'checkout', 'db', ...bad]);
      expect(r.code).toBe(EXIT.usage);
    }
    expect(seen).toEqual([]);
  });

  it('rotate-now posts to …/rotate; rotation --every / --off set and clear the schedule', async () => {
    routes[`POST ${base}/db/rotate`] = () => ({ status: 200, body: view({ currentVersion: 2 }) });
    routes[`PUT ${base}/db/rotation`] = () => ({ status: 200, body: view({ rotateEveryDays: 7 }) });
    routes[`DELETE ${base}/db/rotation`] = () => ({ status: 200, body: view({ rotateEveryDays: null, nextRotationAt: null }) });
    expect((await sigil(['secrets', 'rotate-now', 'shop', 'checkout', 'db'])).stdout).toContain('version 2 generated');
    expect((await sigil(['secrets', 'rotation', 'shop', 'checkout', 'db', '--every', '7'])).stdout).toContain('rotates every 7 days');
    expect((await sigil(['secrets', 'rotation', 'shop', 'checkout', 'db', '--off'])).stdout).toBe('secret db: no automatic rotation\n');
    expect(seen.map((x) => `${x.method} ${x.path}`)).toEqual([
      `POST ${base}/db/rotate`,
      `PUT ${base}/db/rotation`,
      `DELETE ${base}/db/rotation`,
    ]);
    expect(seen[1]!.body).toEqual({ rotateEveryDays: 7 });
    expect((await sigil(['secrets', 'rotation', 'shop', 'checkout', 'db'])).code).toBe(EXIT.usage);
  });

  it('set on a generated secret shows the server’s secret_is_generated and creates nothing', async () => {
    routes[`PUT ${base}/db`] = () => problem(409, 'secret_is_generated', 'secret "db" is generated');
    const r = await sigil(['secrets', 'set', 'shop', 'checkout', 'db', '--from-literal', 'A=1']);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toContain('(secret_is_generated)');
    expect(seen.map((x) => x.method)).toEqual(['PUT']);
  });
});

describe('sigil apps (delivery mode inject)', () => {
  const apps = '/api/v1/projects/shop/apps';

  it('create sends the delivery mode and every --consumer, a * service account included', async () => {
    routes[`POST ${apps}`] = () => ({ status: 201, body: { name: 'checkout' } });
    const r = await sigil([
      'apps',
      'create',
      'shop',
      'checkout',
      '--namespace',
      'shop',
      '--delivery-mode',
      'inject',
      '--consumer',
      'shop/checkout',
      '--consumer',
      'batch/*',
    ]);
    expect(r).toMatchObject({ code: EXIT.ok, stdout: 'app shop/checkout created\n' });
    expect(seen[0]!.body).toEqual({
      name: 'checkout',
      namespace: 'shop',
      deliveryMode: 'inject',
      consumers: [
        { namespace: 'shop', serviceAccount: 'checkout' },
        { namespace: 'batch', serviceAccount: '*' },
      ],
    });
  });

  it('create defaults to env and still takes the older --mode', async () => {
    routes[`POST ${apps}`] = () => ({ status: 201, body: {} });
    expect((await sigil(['apps', 'create', 'shop', 'a', '--namespace', 'shop'])).code).toBe(EXIT.ok);
    expect((await sigil(['apps', 'create', 'shop', 'b', '--namespace', 'shop', '--mode', 'volume'])).code).toBe(EXIT.ok);
    expect(seen.map((x) => (x.body as { deliveryMode: string }).deliveryMode)).toEqual(['env', 'volume']);
  });

  it('refuses a --consumer without namespace/serviceAccount and an unknown mode, before any request', async () => {
    expect((await sigil(['apps', 'create', 'shop', 'a', '--namespace', 'shop', '--consumer', 'shop'])).code).toBe(EXIT.usage);
    expect((await sigil(['apps', 'create', 'shop', 'a', '--namespace', 'shop', '--delivery-mode', 'sidecar'])).code).toBe(EXIT.usage);
    expect(seen).toEqual([]);
  });

  it('update patches only what is given, and shows the server’s consumers_required', async () => {
    routes[`PATCH ${apps}/checkout`] = ({ body }) =>
      (body as { consumers?: unknown }).consumers
        ? { status: 200, body: {} }
        : problem(400, 'consumers_required', 'delivery mode inject needs at least one consumer');
    const refused = await sigil(['apps', 'update', 'shop', 'checkout', '--delivery-mode', 'inject']);
    expect(refused.code).toBe(EXIT.usage);
    expect(refused.stderr).toContain('(consumers_required)');
    const ok = await sigil(['apps', 'update', 'shop', 'checkout', '--delivery-mode', 'inject', '--consumer', 'shop/web']);
    expect(ok).toMatchObject({ code: EXIT.ok, stdout: 'app shop/checkout updated\n' });
    expect(seen.map((x) => x.body)).toEqual([
      { deliveryMode: 'inject' },
      { deliveryMode: 'inject', consumers: [{ namespace: 'shop', serviceAccount: 'web' }] },
    ]);
    expect((await sigil(['apps', 'update', 'shop', 'checkout'])).code).toBe(EXIT.usage);
    expect(seen).toHaveLength(2);
  });

  it('consumption follows every page and prints one row per cluster, secret and namespace/service account', async () => {
    const row = (cluster: string) => ({
      cluster,
      secret: 'db',
      version: 2,
      namespace: 'shop',
      serviceAccount: 'checkout',
      grants: 3,
      lastPod: 'checkout-abc',
      firstAt: '2026-12-02T06:00:00.000Z',
      lastAt: '2026-12-02T06:05:00.000Z',
    });
    routes[`GET ${apps}/checkout/consumption`] = ({ query }) =>
      query.get('after')
        ? { status: 200, body: { items: [row('b')], next: null } }
        : { status: 200, body: { items: [row('a')], next: 'a/db/shop/checkout' } };
    const r = await sigil(['apps', 'consumption', 'shop', 'checkout']);
    expect(r.code).toBe(EXIT.ok);
    expect(r.stdout.split('\n')[0]).toMatch(/^CLUSTER +SECRET +VERSION +NAMESPACE +SERVICEACCOUNT +GRANTS +LASTPOD +LASTAT$/);
    expect(r.stdout).toMatch(/^a +db +2 +shop +checkout +3 +checkout-abc +2026-12-02T06:05:00.000Z$/m);
    expect(r.stdout).toMatch(/^b +db /m);
  });
});

describe('sigil publish --wait', () => {
  const publish = '/api/v1/projects/shop/apps/checkout/publish';
  const status = '/api/v1/projects/shop/apps/checkout/publication';

  it('long-polls until converged and exits 0, sending the idempotency key', async () => {
    routes[`POST ${publish}`] = () => ({ status: 200, body: publication([['a', 'pending', null]]) });
    routes[`GET ${status}`] = ({ query }) => {
      expect(query.get('wait')).toMatch(/^\d+$/);
      return { status: 200, body: publication([['a', 'provisioned', null]]) };
    };
    const r = await sigil(['publish', 'shop', 'checkout', '--clusters', 'a', '--wait', '--idempotency-key', 'k1']);
    expect(r).toMatchObject({ code: EXIT.ok, stdout: 'shop/checkout published: 1 of 1 clusters provisioned\n' });
    expect(r.stderr).toBe('0 of 1 clusters provisioned, 1 pending\n');
    expect(seen[0]).toMatchObject({ body: { clusters: ['a'] }, idempotencyKey: 'k1', authorization: 'Bearer sgl_test-token' });
  });

  it('exits 1 naming each failed cluster with its reason', async () => {
    routes[`POST ${publish}`] = () => ({
      status: 200,
      body: publication([
        ['a', 'provisioned', null],
        ['b', 'failed', 'Conflict: shop/db'],
      ]),
    });
    const r = await sigil(['publish', 'shop', 'checkout', '--selector', 'tier=store', '--wait']);
    expect(r.code).toBe(EXIT.failed);
    expect(r.stderr).toContain('failed on 1 cluster(s): b (Conflict: shop/db)');
    expect(seen[0]!.body).toEqual({ selector: { matchLabels: { tier: 'store' } } });
  });

  it('exits 5 when --timeout passes, naming the clusters still pending', async () => {
    routes[`POST ${publish}`] = () => ({ status: 200, body: publication([['lonely', 'pending', null]]) });
    routes[`GET ${status}`] = () => ({ status: 200, body: publication([['lonely', 'pending', null]]) });
    const r = await sigil(['publish', 'shop', 'checkout', '--clusters', 'lonely', '--wait', '--timeout', '1']);
    expect(r.code).toBe(EXIT.timeout);
    expect(r.stderr).toContain('timed out after 1 s; still waiting for: lonely');
  });

  it('exits 2 without --clusters or --selector', async () => {
    expect((await sigil(['publish', 'shop', 'checkout'])).code).toBe(EXIT.usage);
    expect(seen).toEqual([]);
  });
});

describe('sigil root-keys', () => {
  const rotation = (state: string, done: number) => ({
    id: '0b7e2b9c-3c1e-4f7a-9d55-5b1f0f3e8a21',
    fromVersion: 1,
    toVersion: 2,
    state,
    total: 1000,
    done,
    startedAt: '2026-12-02T00:00:00.000Z',
    finishedAt: state === 'running' ? null : '2026-12-02T00:00:01.000Z',
  });

  it('rotate --wait polls the rotation until it completes', async () => {
    routes['POST /api/v1/root-keys/rotations'] = () => ({ status: 201, body: rotation('running', 0) });
    let polls = 0;
    routes[`GET /api/v1/root-keys/rotations/${rotation('running', 0).id}`] = () =>
      ++polls < 2 ? { status: 200, body: rotation('running', 500) } : { status: 200, body: rotation('completed', 1000) };
    const r = await sigil(['root-keys', 'rotate', '--wait']);
    expect(r.code).toBe(EXIT.ok);
    expect(r.stdout).toContain('root key version 2 active (was 1)');
    expect(r.stdout).toContain('completed: re-wrapped 1000 of 1000');
    expect(r.stderr).toContain('re-wrapped 500 of 1000');
  });

  it('a non-admin token exits 4', async () => {
    routes['POST /api/v1/root-keys/rotations'] = () => problem(403, 'forbidden', 'this token may not root-keys:manage');
    const r = await sigil(['root-keys', 'rotate']);
    expect(r.code).toBe(EXIT.auth);
    expect(r.stderr).toContain('(forbidden)');
  });

  it('destroy refuses the active key with the server’s code', async () => {
    routes['DELETE /api/v1/root-keys/2'] = () => problem(409, 'root_key_not_retired', 'root key version 2 is active, not retired');
    const r = await sigil(['root-keys', 'destroy', '2']);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toContain('(root_key_not_retired)');
    routes['DELETE /api/v1/root-keys/1'] = () => ({ status: 204 });
    expect(await sigil(['root-keys', 'destroy', '1'])).toMatchObject({
      code: EXIT.ok,
      stdout: 'root key version 1 destroyed in the HSM\n',
    });
  });
});

describe('sigil connections', () => {
  const PASSWORD = 'Cli-Admin-Canary-9d1e';
  const view = (over: Record<string, unknown> = {}) => ({
    id: '0b7e2b9c-3c1e-4f7a-9d55-5b1f0f3e8a22',
    project: 'shop',
    name: 'orders-db',
    engine: 'postgresql',
    host: 'db.internal',
    port: 5432,
    database: 'orders',
    username: 'sigil_admin',
    tlsMode: 'verify-full',
    caCertificate: null,
    rolePrefix: 'sigil_0b7e2b9c_',
    adminPasswordSetAt: '2026-12-02T00:00:00.000Z',
    version: 1,
    createdAt: '2026-12-02T00:00:00.000Z',
    updatedAt: '2026-12-02T00:00:00.000Z',
    ...over,
  });

  it('create reads the admin password from stdin (one newline dropped) and never prints it', async () => {
    routes['POST /api/v1/projects/shop/connections'] = () => ({ status: 201, body: view() });
    const r = await sigil(
      [
        'connections',
        'create',
        'shop',
        'orders-db',
        '--host',
        'db.internal',
        '--database',
        'orders',
        '--username',
        'sigil_admin',
        '--admin-password-stdin',
        '--tls-mode',
        'require',
        '--port',
        '6432',
      ],
      { stdin: `${PASSWORD}\n` },
    );
    expect(r.code).toBe(EXIT.ok);
    expect(seen[0]!.body).toEqual({
      name: 'orders-db',
      host: 'db.internal',
      database: 'orders',
      username: 'sigil_admin',
      adminPassword: PASSWORD,
      port: 6432,
      tlsMode: 'require',
    });
    expect(r.stdout).toBe('connection orders-db: sigil_admin@db.internal:5432/orders (verify-full), roles sigil_0b7e2b9c_*\n');
    expect(`${r.stdout}${r.stderr}`).not.toContain(PASSWORD);
  });

  it('create prompts for the password without echo in a terminal (raw mode on, then off)', async () => {
    routes['POST /api/v1/projects/shop/connections'] = () => ({ status: 201, body: view() });
    const raw: boolean[] = [];
    const tty = Object.assign(Readable.from([Buffer.from('Typed-Pa'), Buffer.from('x\u007fss\r')]), {
      isTTY: true,
      setRawMode: (on: boolean) => raw.push(on),
    });
    let stderr = '';
    const dir = mkdtempSync(path.join(tmpdir(), 'sigil-cli-spec-'));
    const code = await runCli(
      ['node', 'sigil', 'connections', 'create', 'shop', 'orders-db', '--host', 'h', '--database', 'd', '--username', 'u'],
      {
        env: { SIGIL_CONFIG: path.join(dir, 'config.json'), SIGIL_SERVER: url, SIGIL_TOKEN: 'sgl_test-token' },
        fetch: globalThis.fetch,
        stdin: tty,
        stdout: { write: () => true },
        stderr: { write: (s: string) => (stderr += s) },
      },
    );
    expect(code).toBe(EXIT.ok);
    expect(raw).toEqual([true, false]);
    expect(stderr).toBe('Admin password: \n');
    expect((seen[0]!.body as { adminPassword: string }).adminPassword).toBe('Typed-Pass');
  });

  it('create refuses without a password source (no terminal), a bad port or TLS mode, before any request', async () => {
    const base = ['connections', 'create', 'shop', 'orders-db', '--host', 'h', '--database', 'd', '--username', 'u'];
    const none = await sigil(base);
    expect(none.code).toBe(EXIT.usage);
    expect(none.stderr).toContain('--admin-password-stdin');
    expect((await sigil([...base, '--admin-password-stdin'], { stdin: '\n' })).stderr).toContain('empty');
    expect((await sigil([...base, '--port', '70000', '--admin-password-stdin'], { stdin: 'x' })).code).toBe(EXIT.usage);
    expect((await sigil([...base, '--tls-mode', 'prefer', '--admin-password-stdin'], { stdin: 'x' })).code).toBe(EXIT.usage);
    expect(seen).toEqual([]);
  });

  it('list shows settings and when the password was set; update replaces the password from stdin', async () => {
    routes['GET /api/v1/projects/shop/connections'] = () => ({ status: 200, body: { items: [view()], next: null } });
    const list = await sigil(['connections', 'list', 'shop']);
    expect(list.code).toBe(EXIT.ok);
    expect(list.stdout).toMatch(/^NAME +ENGINE +HOST +PORT +DATABASE +USERNAME +TLSMODE +ROLEPREFIX +ADMINPASSWORDSETAT$/m);
    routes['PATCH /api/v1/projects/shop/connections/orders-db'] = () => ({ status: 200, body: view({ version: 2 }) });
    const up = await sigil(['connections', 'update', 'shop', 'orders-db', '--admin-password-stdin'], { stdin: 'New-Password-1\n' });
    expect(up.code).toBe(EXIT.ok);
    expect(seen[1]!.body).toEqual({ adminPassword: 'New-Password-1' });
    expect((await sigil(['connections', 'update', 'shop', 'orders-db'])).code).toBe(EXIT.usage);
  });

  it('verify prints the server version; a failing database exits 3 with the code and its reason', async () => {
    routes['POST /api/v1/projects/shop/connections/orders-db/verify'] = () => ({
      status: 200,
      body: { serverVersion: '18.4', canCreateRoles: true, superuser: false },
    });
    expect(await sigil(['connections', 'verify', 'shop', 'orders-db'])).toMatchObject({
      code: EXIT.ok,
      stdout: 'connection orders-db: PostgreSQL 18.4, can create roles\n',
    });
    routes['POST /api/v1/projects/shop/connections/orders-db/verify'] = () => ({
      status: 502,
      body: { type: 'about:blank', title: 'bad gateway', status: 502, code: 'connection_failed', reason: 'auth_failed', detail: 'refused' },
    });
    const bad = await sigil(['connections', 'verify', 'shop', 'orders-db']);
    expect(bad.code).toBe(EXIT.unavailable);
    expect(bad.stderr).toContain('(connection_failed: auth_failed)');
    routes['POST /api/v1/projects/shop/connections/orders-db/verify'] = () => ({
      status: 200,
      body: { serverVersion: '18.4', canCreateRoles: false, superuser: false },
    });
    expect((await sigil(['connections', 'verify', 'shop', 'orders-db'])).code).toBe(EXIT.failed);
    routes['POST /api/v1/projects/shop/connections/orders-db/verify'] = () => ({
      status: 200,
      body: { serverVersion: '18.4', canCreateRoles: false, superuser: true },
    });
    const superuser = await sigil(['connections', 'verify', 'shop', 'orders-db']);
    expect(superuser.code).toBe(EXIT.failed);
    expect(superuser.stderr).toContain('is a superuser');
  });

  it('delete shows connection_in_use', async () => {
    routes['DELETE /api/v1/projects/shop/connections/orders-db'] = () => problem(409, 'connection_in_use', 'used by checkout/db');
    const r = await sigil(['connections', 'delete', 'shop', 'orders-db']);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toContain('(connection_in_use)');
  });
});

describe('sigil leases', () => {
  const ID = '3f2a9c1e-7b4d-4e8a-9c0f-1d2e3f4a5b6c';
  const lease = (over: Record<string, unknown> = {}) => ({
    id: ID,
    project: 'shop',
    app: 'checkout',
    secret: 'orders-db',
    cluster: 'eu-1',
    serial: 2,
    role: 'sigil_0b7e2b9c_5e6f708192a3b4c5d6e7',
    state: 'active',
    issuedAt: '2026-12-02T00:00:00.000Z',
    expiresAt: '2026-12-03T00:00:00.000Z',
    renewAt: '2026-12-02T18:00:00.000Z',
    revokeAfter: null,
    revokedAt: null,
    revokeReason: null,
    attempts: 0,
    lastError: null,
    createdAt: '2026-12-02T00:00:00.000Z',
    ...over,
  });
  const appLeases = 'GET /api/v1/projects/shop/apps/checkout/leases';

  it("list --project --app follows every page, passing the filters on each, and prints the app's columns", async () => {
    const queries: Array<Record<string, string>> = [];
    routes[appLeases] = ({ query }) => {
      queries.push(Object.fromEntries(query));
      return query.get('after')
        ? {
            status: 200,
            body: { items: [lease({ id: 'b-id', cluster: null, state: 'failed', lastError: 'unreachable: db:5432' })], next: null },
          }
        : { status: 200, body: { items: [lease()], next: ID } };
    };
    const r = await sigil([
      'leases',
      'list',
      '--project',
      'shop',
      '--app',
      'checkout',
      '--cluster',
      'eu-1',
      '--secret',
      'orders-db',
      '--state',
      'active',
    ]);
    expect(r.code).toBe(EXIT.ok);
    const filters = { limit: '500', cluster: 'eu-1', secret: 'orders-db', state: 'active' };
    expect(queries).toEqual([filters, { ...filters, after: ID }]);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID +CLUSTER +SECRET +SERIAL +STATE +ROLE +ISSUEDAT +EXPIRESAT +REVOKEDAT +REVOKEREASON +LASTERROR$/);
    expect(lines[1]).toMatch(
      new RegExp(
        `^${ID} +eu-1 +orders-db +2 +active +sigil_0b7e2b9c_5e6f708192a3b4c5d6e7 +2026-12-02T00:00:00.000Z +2026-12-03T00:00:00.000Z +- +- +-$`,
      ),
    );
    expect(lines[2]).toMatch(/^b-id +- +orders-db +2 +failed .* unreachable: db:5432$/);
    expect(lines).toHaveLength(3);
  });

  it('list --cluster alone asks the cluster view and prints project and app; -o json prints the leases', async () => {
    let query: Record<string, string> = {};
    routes['GET /api/v1/clusters/eu-1/leases'] = (req) => {
      query = Object.fromEntries(req.query);
      return { status: 200, body: { items: [lease()], next: null } };
    };
    const r = await sigil(['leases', 'list', '--cluster', 'eu-1', '--state', 'revoked']);
    expect(r.code).toBe(EXIT.ok);
    expect(query).toEqual({ limit: '500', state: 'revoked' });
    expect(r.stdout.split('\n')[0]).toMatch(/^ID +PROJECT +APP +SECRET +SERIAL +STATE /);
    expect(r.stdout).toMatch(new RegExp(`^${ID} +shop +checkout +orders-db +2 +active `, 'm'));
    const json = await sigil(['-o', 'json', 'leases', 'list', '--cluster', 'eu-1']);
    expect(JSON.parse(json.stdout)).toEqual([lease()]);
  });

  it('list refuses --project without --app, no scope at all, and an unknown --state, before any request', async () => {
    for (const args of [
      ['--project', 'shop'],
      ['--app', 'checkout', '--cluster', 'eu-1'],
      [],
      ['--cluster', 'eu-1', '--state', 'expired'],
    ]) {
      const r = await sigil(['leases', 'list', ...args]);
      expect(r.code).toBe(EXIT.usage);
    }
    expect((await sigil(['leases', 'list', '--project', 'shop'])).stderr).toContain('--project and --app together');
    expect(seen).toEqual([]);
  });

  it('list shows the server’s refusal of a filter (exit 2) and of a cluster outside the token’s scope (exit 4)', async () => {
    routes[appLeases] = () => problem(400, 'invalid_lease_filter', 'cluster must be a cluster name');
    const bad = await sigil(['leases', 'list', '--project', 'shop', '--app', 'checkout', '--cluster', 'Nope']);
    expect([bad.code, bad.stderr]).toEqual([EXIT.usage, 'sigil: cluster must be a cluster name (invalid_lease_filter)\n']);
    routes['GET /api/v1/clusters/eu-1/leases'] = () => problem(403, 'forbidden', 'outside the cluster scope');
    expect((await sigil(['leases', 'list', '--cluster', 'eu-1'])).code).toBe(EXIT.auth);
  });

  it('revoke posts to …/leases/<id>/revoke and prints the new state; a lease being issued is refused with its code', async () => {
    routes[`POST /api/v1/projects/shop/apps/checkout/leases/${ID}/revoke`] = () => ({ status: 200, body: lease({ state: 'revoking' }) });
    const r = await sigil(['leases', 'revoke', '--project', 'shop', '--app', 'checkout', ID]);
    expect(r.code).toBe(EXIT.ok);
    expect(r.stdout).toBe(`lease ${ID} (orders-db on eu-1, serial 2, role sigil_0b7e2b9c_5e6f708192a3b4c5d6e7): revoking\n`);
    expect(seen.map((s) => `${s.method} ${s.path}`)).toEqual([`POST /api/v1/projects/shop/apps/checkout/leases/${ID}/revoke`]);
    routes[`POST /api/v1/projects/shop/apps/checkout/leases/${ID}/revoke`] = () =>
      problem(409, 'lease_not_revocable', 'the lease is being issued; revoke it once it is active');
    const refused = await sigil(['leases', 'revoke', '--project', 'shop', '--app', 'checkout', ID]);
    expect(refused.code).toBe(EXIT.usage);
    expect(refused.stderr).toContain('(lease_not_revocable)');
    expect((await sigil(['leases', 'revoke', '--project', 'shop', ID])).code).toBe(EXIT.usage); // --app is required
    expect(seen).toHaveLength(2);
  });
});

describe('sigil login', () => {
  it('checks the token, then stores it 0600 without printing it', async () => {
    routes['GET /api/v1/projects'] = ({ headers }) =>
      headers.authorization === 'Bearer sgl_from-stdin'
        ? { status: 200, body: { items: [], next: null } }
        : problem(401, 'unauthenticated', 'no');
    const r = await sigil(['--server', url, 'login', '--name', 'ci'], { token: null, stdin: 'sgl_from-stdin\n' });
    expect(r.code).toBe(EXIT.ok);
    expect(r.stdout).not.toContain('sgl_from-stdin');
    const file = path.join(r.dir, 'config.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({
      currentContext: 'ci',
      contexts: { ci: { server: url, token: 'sgl_from-stdin' } },
    });
    const bad = await sigil(['--server', url, 'login'], { token: null, stdin: 'sgl_wrong' });
    expect(bad.code).toBe(EXIT.auth);
  });
});
