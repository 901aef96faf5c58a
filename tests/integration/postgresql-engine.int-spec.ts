import { randomBytes } from 'node:crypto';
import { chownSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { CredentialEngineError, type ConnectionTarget } from '../../apps/control-plane/src/connections/engines/credential-engine.js';
import { NetworkDialPolicy } from '../../apps/control-plane/src/connections/engines/dial-policy.js';
import { PostgresCredentialEngine } from '../../apps/control-plane/src/connections/engines/postgresql.engine.js';
import { selfSigned } from '../harness/certificates.js';
import { eventually } from '../harness/eventually.js';
import { testEnv, uniqueName } from '../harness/test-env.js';

/**
 * The PostgreSQL credential engine against the test PostgreSQL 18: a target database of its own
 * (never Sigil's schema) and an admin role with CREATEROLE only, the least privilege
 * docs/dynamic-secrets.md tells operators to give Sigil. Roles are cluster-wide, so every name
 * carries this run's random prefix.
 */

const engine = new PostgresCredentialEngine({ connectTimeoutMs: 3_000, statementTimeoutMs: 10_000, terminateWaitMs: 5_000 });
const tag = randomBytes(4).toString('hex');
const prefix = `sigil_${tag}_`;
const admin = `sigil_admin_${tag}`;
const adminPassword = randomBytes(18).toString('base64url');
const database = uniqueName('target').replace(/-/g, '_');
const server = new URL(testEnv().postgres.adminUrl);
const host = server.hostname;
const port = Number(server.port);

const target = (over: Partial<ConnectionTarget> = {}): ConnectionTarget => ({
  id: '00000000-0000-4000-8000-000000000001',
  host,
  port,
  database,
  username: admin,
  tlsMode: 'disable',
  rolePrefix: prefix,
  adminPassword: Buffer.from(adminPassword),
  ...over,
});

const CREATE = ['CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}', 'GRANT SELECT ON orders TO {{name}}'];

async function client(url: string | pg.ClientConfig): Promise<pg.Client> {
  const c = new pg.Client(typeof url === 'string' ? { connectionString: url } : url);
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

const superuser = (db = 'postgres') => {
  const u = new URL(testEnv().postgres.adminUrl);
  u.pathname = `/${db}`;
  return client(u.toString());
};

const loginAs = (user: string, password: string) =>
  client({ host, port, database, user, password, connectionTimeoutMillis: 3_000, application_name: 'engine-test' });

/** The engine's error, with a check that its message holds no secret. */
async function failure(p: Promise<unknown>, ...secrets: string[]): Promise<CredentialEngineError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CredentialEngineError);
  const message = (err as Error).message;
  for (const s of [adminPassword, 'SCRAM-SHA-256', ...secrets]) expect(message).not.toContain(s);
  return err as CredentialEngineError;
}

let su: pg.Client;

beforeAll(async () => {
  su = await superuser();
  await su.query(`CREATE DATABASE ${database}`);
  await su.query(`CREATE ROLE ${admin} LOGIN CREATEROLE PASSWORD ${pg.escapeLiteral(adminPassword)}`);
  const t = await superuser(database);
  try {
    await t.query('CREATE TABLE orders (id int PRIMARY KEY, item text)');
    await t.query(`INSERT INTO orders VALUES (1, 'book')`);
    // What the admin hands on it must hold with GRANT OPTION (or own).
    await t.query(`GRANT SELECT, INSERT ON orders TO ${admin} WITH GRANT OPTION`);
  } finally {
    await t.end();
  }
}, 30_000);

afterAll(async () => {
  await su.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  const { rows } = await su.query<{ rolname: string }>(
    `SELECT rolname FROM pg_roles WHERE starts_with(rolname, 'sigil') AND rolname LIKE $1`,
    [`%${tag}%`],
  );
  for (const r of rows) await su.query(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(r.rolname)}`).catch(() => undefined);
  await su.query(`DROP ROLE IF EXISTS ${admin}`);
  await su.end();
});

describe('PostgreSQL credential engine', () => {
  it('verifies: the server version, and that a CREATEROLE admin can create roles (a plain role cannot)', async () => {
    const info = await engine.verify(target());
    expect(info.serverVersion).toMatch(/^18\./);
    expect(info).toMatchObject({ canCreateRoles: true, superuser: false });
    const plain = `sigil_plain_${tag}`;
    await su.query(`CREATE ROLE ${plain} LOGIN PASSWORD 'plain-password-1'`);
    expect(await engine.verify(target({ username: plain, adminPassword: Buffer.from('plain-password-1') }))).toMatchObject({
      canCreateRoles: false,
      superuser: false,
    });
    // A superuser could create roles, but issuance refuses it, so verify says it cannot.
    const superuser = target({
      username: decodeURIComponent(server.username),
      adminPassword: Buffer.from(decodeURIComponent(server.password)),
    });
    expect(await engine.verify(superuser)).toMatchObject({ canCreateRoles: false, superuser: true });
  });

  it('creates a role that logs in with the plaintext password, can do exactly what was granted, and expires when asked', async () => {
    const role = `${prefix}grant`;
    const password = randomBytes(18).toString('base64url');
    const expiresAt = new Date(Date.now() + 3_600_000);
    expiresAt.setMilliseconds(0);
    await engine.createRole(target(), { role, password: Buffer.from(password), expiresAt, statements: CREATE });

    const { rows } = await su.query<{ rolpassword: string; rolvaliduntil: Date }>(
      'SELECT rolpassword, rolvaliduntil FROM pg_authid WHERE rolname = $1',
      [role],
    );
    expect(rows[0]!.rolpassword).toMatch(/^SCRAM-SHA-256\$4096:/); // the verifier Sigil computed, stored as is
    expect(rows[0]!.rolpassword).not.toContain(password);
    expect(rows[0]!.rolvaliduntil.getTime()).toBe(expiresAt.getTime());

    const c = await loginAs(role, password);
    try {
      expect((await c.query('SELECT item FROM orders')).rows).toEqual([{ item: 'book' }]);
      await expect(c.query(`INSERT INTO orders VALUES (2, 'pen')`)).rejects.toMatchObject({ code: '42501' });
    } finally {
      await c.end();
    }
    await expect(loginAs(role, `${password}x`)).rejects.toMatchObject({ code: '28P01' });
  });

  it('creates in one transaction: a failing statement leaves no role, and the error names the statement, not its text', async () => {
    const role = `${prefix}rollback`;
    const err = await failure(
      engine.createRole(target(), {
        role,
        password: Buffer.from('Rollback-Password-1'),
        expiresAt: new Date(Date.now() + 60_000),
        statements: [...CREATE, 'GRANT SELECT ON no_such_table TO {{name}}'],
      }),
      'Rollback-Password-1',
      'no_such_table',
    );
    expect(err.code).toBe('statement_failed');
    expect(err.databaseCode).toBe('42P01');
    expect(err.message).toBe('creation statement 3 of 3 failed: SQLSTATE 42P01 (undefined_table)');
    expect((await su.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role])).rows).toEqual([]);

    const syntax = await failure(
      engine.createRole(target(), {
        role,
        password: Buffer.from('Syntax-Password-1'),
        expiresAt: new Date(Date.now() + 60_000),
        statements: ['CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}} BOGUS'],
      }),
      'Syntax-Password-1',
    );
    expect(syntax.message).toMatch(/^creation statement 1 of 1 failed: SQLSTATE 42601 \(syntax_error\) at character \d+$/);
    await expect(
      engine.createRole(target(), { role, password: Buffer.from('x'), expiresAt: new Date(), statements: ['CREATE ROLE {{nme}}'] }),
    ).rejects.toMatchObject({ code: 'statement_failed', message: expect.stringMatching(/uses \{\{nme\}\}/) });
    await expect(
      engine.createRole(target(), { role: 'postgres', password: Buffer.from('x'), expiresAt: new Date(), statements: CREATE }),
    ).rejects.toMatchObject({ code: 'statement_failed', message: expect.stringMatching(/role prefix/) });
  });

  it('sets VALID UNTIL to the expiry whatever the statements say, and refuses statements outside the allowed forms', async () => {
    const role = `${prefix}valid`;
    const expiresAt = new Date(Date.now() + 120_000);
    expiresAt.setMilliseconds(0);
    await engine.createRole(target(), {
      role,
      password: Buffer.from('Valid-Password-1'),
      expiresAt,
      statements: ['CREATE ROLE {{name}} LOGIN PASSWORD {{password}}'], // no VALID UNTIL: the engine adds it
    });
    const { rows } = await su.query<{ v: Date }>('SELECT rolvaliduntil AS v FROM pg_roles WHERE rolname = $1', [role]);
    expect(rows[0]!.v.getTime()).toBe(expiresAt.getTime());

    for (const statement of ['ALTER ROLE CURRENT_USER CREATEDB', `ALTER ROLE ${admin} PASSWORD 'x'`, 'COPY orders TO STDOUT']) {
      const err = await failure(
        engine.createRole(target(), {
          role: `${prefix}forms`,
          password: Buffer.from('Forms-Password-1'),
          expiresAt,
          statements: ['CREATE ROLE {{name}} LOGIN PASSWORD {{password}}', statement],
        }),
      );
      expect(err.message).toMatch(/^creation statements: statement 2 is not one of the creation forms/);
    }
    // Two statements in one string: the extended protocol refuses the second, nothing runs.
    const smuggled = await failure(
      engine.createRole(target(), {
        role: `${prefix}smuggled`,
        password: Buffer.from('Smuggled-Password-1'),
        expiresAt,
        statements: ['CREATE ROLE {{name}} LOGIN PASSWORD {{password}}; ALTER ROLE CURRENT_USER CREATEDB'],
      }),
    );
    expect(smuggled.message).toBe('creation statement 1 of 1 failed: SQLSTATE 42601 (syntax_error)');
    expect((await su.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [`${prefix}smuggled`])).rows).toEqual([]);
    await expect(
      engine.revokeRole(target(), { role, statements: ['ALTER ROLE {{name}} LOGIN', 'DROP ROLE {{name}}'] }),
    ).rejects.toMatchObject({ code: 'statement_failed', message: expect.stringMatching(/not one of the revocation forms/) });
  });

  it('commits a role only without power: a member of pg_signal_backend or of the admin is rolled back; a superuser admin is refused', async () => {
    // The admin could hand these out (it holds them WITH ADMIN OPTION); the engine's check is what refuses.
    await su.query(`GRANT pg_signal_backend TO ${admin} WITH ADMIN OPTION`);
    const role = `${prefix}power`;
    try {
      const err = await failure(
        engine.createRole(target(), {
          role,
          password: Buffer.from('Power-Password-1'),
          expiresAt: new Date(Date.now() + 60_000),
          statements: [...CREATE, 'GRANT pg_signal_backend TO {{name}}'],
        }),
      );
      expect(err.message).toMatch(/^the creation statements made role \S+ a member of the admin role, a privileged role/);
      expect((await su.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role])).rows).toEqual([]);
    } finally {
      await su.query(`REVOKE pg_signal_backend FROM ${admin}`);
    }

    const superName = decodeURIComponent(server.username);
    const superPassword = decodeURIComponent(server.password);
    const refused = await failure(
      engine.createRole(target({ username: superName, adminPassword: Buffer.from(superPassword) }), {
        role,
        password: Buffer.from('Power-Password-1'),
        expiresAt: new Date(Date.now() + 60_000),
        statements: CREATE,
      }),
      superPassword,
    );
    expect(refused.message).toMatch(/is a superuser; Sigil issues credentials only as a role with CREATEROLE/);
    expect((await su.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role])).rows).toEqual([]);
  });

  it('revokes: new logins refused, an open session ended within seconds, a second revoke succeeds', async () => {
    const role = `${prefix}revoke`;
    const password = randomBytes(18).toString('base64url');
    await engine.createRole(target(), {
      role,
      password: Buffer.from(password),
      expiresAt: new Date(Date.now() + 3_600_000),
      statements: CREATE,
    });
    // PostgreSQL 16+: the CREATEROLE admin holds ADMIN OPTION on the role it made, not its
    // privileges, so it could not end the role's sessions as such; the engine grants them to itself.
    const before = await su.query<{ usage: boolean; admin: boolean }>(
      `SELECT pg_has_role($1, $2, 'USAGE') AS usage, pg_has_role($1, $2, 'MEMBER WITH ADMIN OPTION') AS admin`,
      [admin, role],
    );
    expect(before.rows[0]).toEqual({ usage: false, admin: true });
    const session = await loginAs(role, password);
    let ended = false;
    session.on('end', () => (ended = true));
    expect((await session.query('SELECT count(*)::int AS n FROM orders')).rows[0]).toEqual({ n: 1 });
    const pid = (await session.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const asAdmin = await loginAs(admin, adminPassword);
    try {
      // Without the role's privileges (or pg_signal_backend) the admin may not end its sessions.
      await expect(asAdmin.query('SELECT pg_terminate_backend($1)', [pid])).rejects.toMatchObject({ code: '42501' });
    } finally {
      await asAdmin.end();
    }

    const started = Date.now();
    await engine.revokeRole(target(), { role, statements: [] });
    await eventually(
      'the open session ends',
      async () => {
        const alive = await session.query('SELECT 1').then(
          () => true,
          () => false,
        );
        return alive && !ended ? undefined : true;
      },
      5_000,
    );
    expect(Date.now() - started).toBeLessThan(5_000);
    await expect(loginAs(role, password)).rejects.toMatchObject({ code: '28P01' });
    expect((await su.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role])).rows).toEqual([]);
    await session.end().catch(() => undefined);

    await engine.revokeRole(target(), { role, statements: [] }); // idempotent
    await engine.revokeRole(target(), { role: `${prefix}never_created`, statements: [] });
  });

  it('refuses to revoke a role the admin did not create (no ADMIN OPTION), saying so, and leaves it alone', async () => {
    const role = `${prefix}foreign`;
    await su.query(`CREATE ROLE ${role} LOGIN`);
    const err = await failure(engine.revokeRole(target(), { role, statements: [] }));
    expect([err.code, err.databaseCode]).toEqual(['statement_failed', '42501']);
    expect(err.message).toBe('refusing new logins of the role failed: SQLSTATE 42501 (insufficient_privilege)');
    expect((await su.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role])).rows).toHaveLength(1);
  });

  it('revokes with custom statements, after ending the sessions', async () => {
    const role = `${prefix}custom`;
    await engine.createRole(target(), {
      role,
      password: Buffer.from('Custom-Password-1'),
      expiresAt: new Date(Date.now() + 60_000),
      statements: CREATE,
    });
    await engine.revokeRole(target(), { role, statements: ['REVOKE SELECT ON orders FROM {{name}}', 'DROP ROLE {{name}}'] });
    expect((await su.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role])).rows).toEqual([]);
    await expect(engine.revokeRole(target(), { role, statements: ['DROP ROLE {{name}} {{password}}'] })).rejects.toMatchObject({
      code: 'statement_failed',
    });
  });

  it('lists the roles with the prefix only: LIKE wildcards in the prefix match nothing else', async () => {
    const mine = [`${prefix}list_a`, `${prefix}list_b`];
    for (const role of mine)
      await engine.createRole(target(), {
        role,
        password: Buffer.from('List-Password-1'),
        expiresAt: new Date(Date.now() + 60_000),
        statements: CREATE,
      });
    // `_` is a LIKE wildcard: these match LIKE 'sigil_<tag>_%' but do not start with the prefix.
    const lookalikes = [`sigilx${tag}xlist`, `sigil_${tag}xlist`, `sigil_${tag.slice(0, 7)}`];
    for (const role of lookalikes) await su.query(`CREATE ROLE ${pg.escapeIdentifier(role)}`);
    const listed = await engine.listRoles(target());
    expect(listed.filter((r) => r.includes('list'))).toEqual(mine);
    for (const r of lookalikes) expect(listed).not.toContain(r);
    expect(listed.every((r) => r.startsWith(prefix))).toBe(true);
  });

  it('maps failures to codes, never quoting a password: unreachable, wrong password, unknown database, TLS refused', async () => {
    const closed = await failure(engine.verify(target({ port: 1 })));
    expect(closed.code).toBe('unreachable');
    expect(closed.message).toBe(`cannot reach ${host}:1 (ECONNREFUSED)`);

    // A server that takes the TCP connection and never answers: the connect timeout ends it.
    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const started = Date.now();
      const quick = new PostgresCredentialEngine({ connectTimeoutMs: 300 });
      const hung = await failure(quick.verify(target({ host: '127.0.0.1', port: (silent.address() as AddressInfo).port })));
      expect(hung.code).toBe('unreachable');
      expect(hung.message).toMatch(/connect timeout/);
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      silent.close();
    }

    const wrong = await failure(engine.verify(target({ adminPassword: Buffer.from('Wrong-Password-123') })), 'Wrong-Password-123');
    expect(wrong.code).toBe('auth_failed');
    expect(wrong.databaseCode).toBe('28P01');

    expect((await failure(engine.verify(target({ database: 'no_such_db' })))).code).toBe('unreachable');
    expect((await failure(engine.listRoles(target({ host: 'no-such-host.invalid' })))).code).toBe('unreachable');

    // The test server offers no TLS (until the next test turns it on): require and verify-full refuse to go on in plaintext.
    const tls = await failure(engine.verify(target({ tlsMode: 'require' })));
    expect(tls.code).toBe('tls_failed');
    expect(tls.message).toMatch(/does not offer TLS/);
  });

  it('TLS: verify-full checks the CA and the host name; require encrypts without checking', async () => {
    const { rows } = await su.query<{ dir: string }>(`SELECT current_setting('data_directory') AS dir`);
    const dir = rows[0]!.dir;
    const owner = statSync(dir);
    const cert = selfSigned('sigil-test-db', ['subjectAltName=IP:127.0.0.1']);
    const other = selfSigned('another-ca', ['subjectAltName=IP:127.0.0.1']);
    const file = (name: string, content: string) => {
      const p = path.join(dir, name);
      writeFileSync(p, content, { mode: 0o600 });
      chownSync(p, owner.uid, owner.gid);
      return p;
    };
    await su.query(`ALTER SYSTEM SET ssl_cert_file = ${pg.escapeLiteral(file(`engine-test-${tag}.crt`, cert.cert))}`);
    await su.query(`ALTER SYSTEM SET ssl_key_file = ${pg.escapeLiteral(file(`engine-test-${tag}.key`, cert.key))}`);
    await su.query('ALTER SYSTEM SET ssl = on');
    await su.query('SELECT pg_reload_conf()');
    try {
      await eventually('the server offers TLS', async () => (await su.query(`SHOW ssl`)).rows[0].ssl === 'on' || undefined);
      await eventually('TLS is up', () => engine.verify(target({ tlsMode: 'require' })));
      const ok = await engine.verify(target({ tlsMode: 'verify-full', caCertificate: cert.cert }));
      expect(ok.canCreateRoles).toBe(true);

      const untrusted = await failure(engine.verify(target({ tlsMode: 'verify-full', caCertificate: other.cert })));
      expect(untrusted.code).toBe('tls_failed');
      const noCa = await failure(engine.verify(target({ tlsMode: 'verify-full' }))); // the system roots do not know it
      expect(noCa.code).toBe('tls_failed');
      const wrongName = await failure(engine.verify(target({ tlsMode: 'verify-full', caCertificate: cert.cert, host: 'localhost' })));
      expect(wrongName.code).toBe('tls_failed');
      expect(wrongName.message).toMatch(/ERR_TLS_CERT_ALTNAME_INVALID/);
      // Through the dial policy the engine dials the resolved address (127.0.0.1, which the
      // certificate names) but still checks the certificate against the name it was given.
      const dialing = new PostgresCredentialEngine(
        { connectTimeoutMs: 3_000 },
        new NetworkDialPolicy({ denied: [], allowed: [], own: [] }),
      );
      expect(await dialing.verify(target({ tlsMode: 'verify-full', caCertificate: cert.cert }))).toMatchObject({ canCreateRoles: true });
      const byName = await failure(dialing.verify(target({ tlsMode: 'verify-full', caCertificate: cert.cert, host: 'localhost' })));
      expect(byName.message).toMatch(/ERR_TLS_CERT_ALTNAME_INVALID/);
    } finally {
      await su.query('ALTER SYSTEM RESET ssl');
      await su.query('ALTER SYSTEM RESET ssl_cert_file');
      await su.query('ALTER SYSTEM RESET ssl_key_file');
      await su.query('SELECT pg_reload_conf()');
    }
  }, 30_000);
});
