import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { ApiClient } from '../harness/api-client.js';
import { eventually } from '../harness/eventually.js';
import { startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import { databaseDump, redisDump, spellings } from '../harness/secret-scan.js';
import { testEnv, uniqueName } from '../harness/test-env.js';

// Database connections over REST against a real control plane (PostgreSQL, SoftHSM, Redis) and a
// real target database (a second database in the test PostgreSQL, with a CREATEROLE-only admin):
// registered, shown without the password, verified for real, refused with codes, audited; and
// the admin password is nowhere in the control plane's log, its database, Redis or any answer.

describe('database connections', () => {
  let cp: RunningControlPlane;
  let api: ApiClient;
  let viewer: ApiClient;
  let su: pg.Client;
  const tag = randomBytes(4).toString('hex');
  const adminRole = `sigil_e2e_admin_${tag}`;
  const PASSWORD = `Conn-Canary-${randomBytes(9).toString('base64url')}`;
  const WRONG = `Wrong-Canary-${randomBytes(9).toString('base64url')}`;
  const target = uniqueName('target').replace(/-/g, '_');
  const project = uniqueName('c');
  const server = new URL(testEnv().postgres.adminUrl);
  const base = () => `/projects/${project}/connections`;
  const body = (over: Record<string, unknown> = {}) => ({
    name: 'orders-db',
    host: server.hostname,
    port: Number(server.port),
    database: target,
    username: adminRole,
    adminPassword: PASSWORD,
    tlsMode: 'disable',
    ...over,
  });

  beforeAll(async () => {
    su = new pg.Client({ connectionString: testEnv().postgres.adminUrl });
    await su.connect();
    await su.query(`CREATE DATABASE ${target}`);
    await su.query(`CREATE ROLE ${adminRole} LOGIN CREATEROLE PASSWORD ${pg.escapeLiteral(PASSWORD)}`);
    cp = await startControlPlane();
    api = cp.admin;
    expect((await api.post('/projects', { name: project })).status).toBe(201);
    const t = await api.post('/tokens', { name: `viewer-${tag}`, role: 'viewer' });
    expect(t.status).toBe(201);
    viewer = api.as(t.body.token);
  }, 120_000);

  afterAll(async () => {
    await cp?.stop();
    await su?.query(`DROP DATABASE IF EXISTS ${target} WITH (FORCE)`);
    await su?.query(`DROP ROLE IF EXISTS ${adminRole}`);
    await su?.end();
  });

  it('creates a connection and shows it without the password, with adminPasswordSetAt and an ETag', async () => {
    const created = await api.post(base(), body());
    expect(created.status).toBe(201);
    expect(created.headers.get('etag')).toBe('"1"');
    expect(created.body).toMatchObject({
      project,
      name: 'orders-db',
      engine: 'postgresql',
      port: Number(server.port),
      database: target,
      username: adminRole,
      tlsMode: 'disable',
      caCertificate: null,
      rolePrefix: expect.stringMatching(/^sigil_[0-9a-f]{8}_$/),
      adminPasswordSetAt: expect.any(String),
      version: 1,
    });
    expect(created.body).not.toHaveProperty('adminPassword');
    const got = await api.get(`${base()}/orders-db`);
    expect(got.status).toBe(200);
    expect(got.body).toEqual(created.body);
    const list = await viewer.get(base());
    expect(list.status).toBe(200);
    expect(list.body).toMatchObject({ items: [{ name: 'orders-db' }], next: null });
  });

  it('verifies against the real target database: its version, and that the admin can create roles', async () => {
    const v = await api.post(`${base()}/orders-db/verify`);
    expect(v.status).toBe(200);
    expect(v.body).toEqual({ serverVersion: expect.stringMatching(/^18\./), canCreateRoles: true, superuser: false });
  });

  it("refuses a host that is Sigil's own database or Redis, or cloud metadata, with 400 connection_host_denied", async () => {
    const own = new URL(cp.databaseUrl);
    const redis = new URL(testEnv().redis.url);
    for (const over of [
      // Sigil's own database on its own server (the same server holds the targets: only Sigil's database and user are refused)
      { name: 'own-db', host: 'localhost', port: Number(own.port), database: own.pathname.slice(1) },
      { name: 'own-user', port: Number(own.port), username: decodeURIComponent(own.username) },
      { name: 'own-redis', host: redis.hostname, port: Number(redis.port || 6379) },
      { name: 'metadata', host: '169.254.169.254', port: 80 },
      { name: 'mapped-metadata', host: '::ffff:169.254.169.254', port: 80 },
    ]) {
      const r = await api.post(base(), body(over));
      expect({ over, status: r.status, code: r.body.code }).toEqual({ over, status: 400, code: 'connection_host_denied' });
      expect(r.body.detail).not.toContain(PASSWORD);
      expect((await api.get(`${base()}/${over.name}`)).status).toBe(404); // nothing half-written
    }
    // Moving an existing connection there is refused the same way, and changes nothing.
    const current = await api.get(`${base()}/orders-db`);
    const moved = await api.patch(
      `${base()}/orders-db`,
      { host: '169.254.169.254', adminPassword: PASSWORD },
      { 'If-Match': current.headers.get('etag')! },
    );
    expect(moved.status).toBe(400);
    expect(moved.body.code).toBe('connection_host_denied');
    expect((await api.get(`${base()}/orders-db`)).body).toEqual(current.body);
  });

  it('answers a refusing database with 502 connection_failed and the reason; a new password makes it work again', async () => {
    const current = await api.get(`${base()}/orders-db`);
    const wrong = await api.patch(`${base()}/orders-db`, { adminPassword: WRONG }, { 'If-Match': current.headers.get('etag')! });
    expect(wrong.status).toBe(200);
    expect(wrong.body.version).toBe(2);
    expect(Date.parse(wrong.body.adminPasswordSetAt)).toBeGreaterThanOrEqual(Date.parse(current.body.adminPasswordSetAt));
    const refused = await api.post(`${base()}/orders-db/verify`);
    expect(refused.status).toBe(502);
    expect(refused.body).toMatchObject({ code: 'connection_failed', reason: 'auth_failed' });
    const stale = await api.patch(`${base()}/orders-db`, { adminPassword: PASSWORD }, { 'If-Match': '"1"' });
    expect([stale.status, stale.body.code]).toEqual([412, 'precondition_failed']);
    expect((await api.patch(`${base()}/orders-db`, { adminPassword: PASSWORD }, { 'If-Match': '"2"' })).status).toBe(200);
    expect((await api.post(`${base()}/orders-db/verify`)).status).toBe(200);

    const unreachable = await api.post(base(), body({ name: 'nowhere', port: 1 }));
    expect(unreachable.status).toBe(201);
    const down = await api.post(`${base()}/nowhere/verify`);
    expect([down.status, down.body.code, down.body.reason]).toEqual([502, 'connection_failed', 'unreachable']);
  });

  it('refuses bad input with 400 and a code, a duplicate with 409, and a viewer’s writes with 403', async () => {
    const cases: Array<[string, Record<string, unknown>]> = [
      ['name', body({ name: 'Not_A_Label' })],
      ['host', body({ name: 'x1', host: 'bad host!' })],
      ['port', body({ name: 'x2', port: 70000 })],
      ['tlsMode', body({ name: 'x3', tlsMode: 'prefer' })],
      ['caCertificate', body({ name: 'x4', caCertificate: 'not a certificate' })],
      ['rolePrefix', body({ name: 'x5', rolePrefix: 'Bad-Prefix' })],
      ['adminPassword', body({ name: 'x6', adminPassword: '' })],
      ['engine', body({ name: 'x7', engine: 'mysql' })],
      ['username', body({ name: 'x8', username: null })],
    ];
    for (const [field, b] of cases) {
      const r = await api.post(base(), b);
      expect([field, r.status, r.body.code]).toEqual([field, 400, 'validation_failed']);
      expect(r.body.errors.map((e: { field: string }) => e.field)).toContain(field);
    }
    const missing = await api.post(base(), { name: 'x9', host: 'db', database: 'd', username: 'u' });
    expect([missing.status, missing.body.errors[0].field]).toEqual([400, 'adminPassword']);
    const fixed = await api.patch(`${base()}/orders-db`, { rolePrefix: 'sigil_other_' });
    expect([fixed.status, fixed.body.code]).toEqual([400, 'validation_failed']); // fixed once created

    const dup = await api.post(base(), body());
    expect([dup.status, dup.body.code]).toEqual([409, 'connection_exists']);
    expect((await api.get(`${base()}/no-such`)).body.code).toBe('connection_not_found');

    for (const r of [
      await viewer.post(base(), body({ name: 'viewer-made' })),
      await viewer.patch(`${base()}/orders-db`, { host: 'elsewhere' }),
      await viewer.post(`${base()}/orders-db/verify`),
      await viewer.delete(`${base()}/orders-db`),
    ])
      expect(r.status).toBe(403);
    expect((await viewer.get(`${base()}/orders-db`)).status).toBe(200);
  });

  it('a project that still holds a connection is not deleted: 409 project_not_empty naming what is left', async () => {
    const res = await api.delete(`/projects/${project}`);
    expect(res.status).toBe(409);
    expect(res.body.code).toBe('project_not_empty');
    expect(res.body.detail).toContain('database connections');
    expect((await api.get(`${base()}/orders-db`)).status).toBe(200);
  });

  it('audits every write with the settings, never the password; delete removes it', async () => {
    expect((await api.delete(`${base()}/nowhere`)).status).toBe(204);
    expect((await api.get(`${base()}/nowhere`)).status).toBe(404);
    // An outcome record is written once its response is sent (group commit): wait for the delete's.
    const audit = await eventually('the delete is audited', async () => {
      const r = await api.get(`/audit?limit=500`);
      const items = (r.body.items ?? []) as Array<{ action: string; outcome: string }>;
      return items.some((e) => e.action === 'connection.delete' && e.outcome === 'success') ? r : undefined;
    });
    expect(audit.status).toBe(200);
    const mine = (audit.body.items as Array<{ action: string; outcome: string; target: string | null }>).filter((e) =>
      e.action.startsWith('connection.'),
    );
    const success = (action: string) => mine.filter((e) => e.action === action && e.outcome === 'success');
    expect(success('connection.create').map((e) => e.target)).toEqual(
      expect.arrayContaining([expect.stringContaining(`connection=orders-db engine=postgresql host=${server.hostname}`)]),
    );
    expect(success('connection.update').some((e) => e.target?.includes('adminPassword=replaced'))).toBe(true);
    expect(success('connection.verify').length).toBeGreaterThanOrEqual(2);
    expect(success('connection.delete')).toHaveLength(1);
    expect(mine.some((e) => e.outcome === 'denied')).toBe(true); // the viewer's attempts
  });

  it('the admin password is in no log line, database row, Redis key or API answer (only its sealed ciphertext is stored)', async () => {
    const dump = await databaseDump(cp.databaseUrl);
    expect(dump).toContain('orders-db'); // the scan sees the connection's row …
    const redis = await redisDump(cp.redisPrefix);
    const logs = cp.cp.logs();
    expect(logs.length).toBeGreaterThan(0);
    const answers = ApiClient.seen.join('\n');
    for (const s of [...spellings(PASSWORD), ...spellings(WRONG)]) {
      expect(dump).not.toContain(s); // … and not its password
      expect(redis).not.toContain(s);
      expect(logs).not.toContain(s);
      expect(answers).not.toContain(s);
    }
  });
});
