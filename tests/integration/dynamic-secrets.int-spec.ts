import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { AppsService } from '../../apps/control-plane/src/apps/apps.service.js';
import { AuditService } from '../../apps/control-plane/src/audit/audit.service.js';
import { Actor } from '../../apps/control-plane/src/auth/policy.js';
import { ClustersService } from '../../apps/control-plane/src/clusters/clusters.service.js';
import { ConnectionsService } from '../../apps/control-plane/src/connections/connections.service.js';
import { LeaseIssuer } from '../../apps/control-plane/src/leases/lease-issuer.js';
import { LeaseSweep } from '../../apps/control-plane/src/leases/lease-sweep.js';
import { LeasesService } from '../../apps/control-plane/src/leases/leases.service.js';
import { ProjectsService } from '../../apps/control-plane/src/projects/projects.service.js';
import { PublicationsService } from '../../apps/control-plane/src/publications/publications.service.js';
import { SecretsService } from '../../apps/control-plane/src/secrets/secrets.service.js';
import { agentEndpoint, startTestApp, type TestApp } from '../harness/app-context.js';
import { eventually, holds } from '../harness/eventually.js';
import { TargetDatabase } from '../harness/target-database.js';
import { TcpProxy } from '../harness/tcp-proxy.js';
import { databaseDump, redisDump, spellings } from '../harness/secret-scan.js';
import { uniqueName } from '../harness/test-env.js';
import { TestAgent } from '../harness/test-agent.js';

// Dynamic secrets on real parts: the target is a database of its own in the test PostgreSQL
// (never Sigil's schema), registered as a connection and reached through the real PostgreSQL
// engine; delivery goes through the real HSM, PostgreSQL, Redis and mTLS gRPC to test agents
// that open what they receive.

const admin = new Actor('00000000-0000-4000-8000-000000000001', 'test-admin', 'admin', null);
const CREATE = ['CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}', 'GRANT SELECT ON orders TO {{name}}'];
const KEYS = {
  username: '{{username}}',
  password: '{{password}}',
  DATABASE_URL: 'postgresql://{{username}}:{{password}}@{{host}}:{{port}}/{{database}}?sslmode={{sslmode}}',
};

describe('dynamic secrets and leases', () => {
  let t: TestApp;
  let target: TargetDatabase;
  let secrets: SecretsService;
  let publications: PublicationsService;
  let clusters: ClustersService;
  let leases: LeasesService;
  let sigilDb: pg.Client;
  let relayed: TcpProxy | undefined;
  const project = uniqueName('p');
  const agents: TestAgent[] = [];
  const seen: string[] = []; // every password a test agent received: the canary's needles

  const leasesOf = async (app: string, q: { cluster?: string; state?: string } = {}) =>
    (await leases.listForApp(admin, project, app, q, undefined, 100)).page.items;
  const credential = async (agent: TestAgent, secret = 'orders-db') => {
    const r = await agent.sync();
    const values = r.secrets.get(`shop/${secret}`);
    if (values?.password) seen.push(values.password);
    return values;
  };
  const status = (app: string) => publications.view(admin, project, app, 0);

  beforeAll(async () => {
    target = await TargetDatabase.create();
    t = await startTestApp({
      env: {
        SIGIL_LEASE_SWEEP_INTERVAL_MS: '200',
        SIGIL_LEASE_MIN_TTL_S: '5',
        SIGIL_LEASE_DEADLINE_S: '3',
        SIGIL_LEASE_REAPER_INTERVAL_MS: '3600000',
      },
    });
    secrets = t.app.get(SecretsService);
    publications = t.app.get(PublicationsService);
    clusters = t.app.get(ClustersService);
    leases = t.app.get(LeasesService);
    await t.app.get(ProjectsService).create({ name: project });
    await t.app.get(ConnectionsService).create(admin, project, target.connectionRequest('orders-db'));
    await t.app.get(ProjectsService).setNamespaces(admin, project, ['shop']);
    await publications.setProjectSelector(admin, project, {});
    for (const app of ['orders', 'renewing', 'typed'])
      await t.app.get(AppsService).create(admin, project, { name: app, namespace: 'shop', deliveryMode: 'env' });
    const { address, caPem } = agentEndpoint(t.app);
    for (const region of ['eu', 'us']) {
      const name = uniqueName(`store-${region}`);
      await clusters.register(name, { region });
      const agent = new TestAgent(address, caPem, name);
      await agent.enroll({ $case: 'bootstrapToken', value: (await clusters.createEnrollmentToken(admin, name)).token });
      await agent.sync();
      agents.push(agent);
    }
    sigilDb = new pg.Client({ connectionString: t.databaseUrl });
    await sigilDb.connect();
  });

  afterAll(async () => {
    for (const a of agents) a.close();
    await sigilDb?.end();
    await t?.dispose();
    await relayed?.close();
    await target?.drop();
  });

  it('a dynamic secret written while its connection is being deleted is refused, not left naming nothing', async () => {
    const connections = t.app.get(ConnectionsService);
    await connections.create(admin, project, target.connectionRequest('going-db', { port: target.port, suffix: 'g' }));
    const spec = {
      connection: 'going-db',
      creationStatements: CREATE,
      ttlSeconds: 3600,
      renewBeforeSeconds: 600,
      graceSeconds: 60,
      keys: KEYS,
    };
    // A delete in flight: its transaction holds the row (as ConnectionsService.delete does) ...
    const deleting = new pg.Client({ connectionString: t.databaseUrl });
    await deleting.connect();
    try {
      await deleting.query('BEGIN');
      await deleting.query(`SELECT id FROM database_connections WHERE name = 'going-db' FOR UPDATE`);
      // ... the secret's write waits for the row ...
      const writing = secrets.create(admin, project, 'orders', { name: 'orphan', dynamic: spec });
      await new Promise((r) => setTimeout(r, 500));
      // ... and the delete commits first: the write must see that the connection is gone.
      await deleting.query(`DELETE FROM database_connections WHERE name = 'going-db'`);
      await deleting.query('COMMIT');
      await expect(writing).rejects.toMatchObject({ code: 'unknown_connection' });
    } finally {
      await deleting.end();
    }
    const { rows } = await sigilDb.query(`SELECT 1 FROM secrets WHERE name = 'orphan'`);
    expect(rows).toEqual([]);
  });

  it('refuses bad specs with 400 codes, and typed writes to a dynamic secret with 409 secret_is_dynamic', async () => {
    const dynamic = {
      connection: 'orders-db',
      creationStatements: CREATE,
      ttlSeconds: 3600,
      renewBeforeSeconds: 600,
      graceSeconds: 60,
      keys: KEYS,
    };
    await expect(secrets.create(admin, project, 'orders', { name: 'bad', dynamic: { ...dynamic, ttlSeconds: 2 } })).rejects.toMatchObject({
      code: 'invalid_dynamic_secret',
    });
    await expect(
      secrets.create(admin, project, 'orders', { name: 'bad', dynamic: { ...dynamic, renewBeforeSeconds: 3000, graceSeconds: 700 } }),
    ).rejects.toMatchObject({ code: 'invalid_dynamic_secret' });
    await expect(
      secrets.create(admin, project, 'orders', { name: 'bad', dynamic: { ...dynamic, connection: 'nope' } }),
    ).rejects.toMatchObject({
      code: 'unknown_connection',
    });
    await expect(secrets.create(admin, project, 'orders', { name: 'bad', type: 'kubernetes.io/tls', dynamic })).rejects.toMatchObject({
      code: 'invalid_dynamic_secret',
    });
    const created = await secrets.create(admin, project, 'orders', { name: 'orders-db', dynamic });
    expect(created.secret.dynamic).toMatchObject({ connection: 'orders-db', revocationStatements: [] });
    expect(created.current).toBeUndefined();
    await expect(secrets.update(admin, project, 'orders', 'orders-db', { data: { a: 'b' } }, undefined)).rejects.toMatchObject({
      code: 'secret_is_dynamic',
    });
    await expect(secrets.rollback(admin, project, 'orders', 'orders-db', 1, undefined)).rejects.toMatchObject({
      code: 'secret_is_dynamic',
    });
    await expect(secrets.rotateNow(admin, project, 'orders', 'orders-db', undefined)).rejects.toMatchObject({ code: 'secret_is_dynamic' });
  });

  it('publishes to two clusters: each gets its own working credential that can do exactly what the statements grant', async () => {
    await secrets.create(admin, project, 'typed', { name: 'typed-config', data: { LOG_LEVEL: 'info' } });
    await publications.publish(admin, project, 'typed', { clusters: agents.map((a) => a.cluster) });
    await publications.publish(admin, project, 'orders', { clusters: agents.map((a) => a.cluster) });
    const active = await eventually('both clusters hold an active lease', async () => {
      const ls = await leasesOf('orders', { state: 'active' });
      return ls.length === 2 ? ls : undefined;
    });
    expect(active.map((l) => l.serial)).toEqual([1, 1]);
    expect(new Set(active.map((l) => l.roleName)).size).toBe(2);
    for (const l of active) expect(l.roleName.startsWith(target.prefix)).toBe(true);

    const creds = [];
    for (const agent of agents) {
      const c = await eventually('the credential is delivered', () => credential(agent));
      creds.push(c);
      const mine = active.find((l) => l.cluster === agent.cluster)!;
      expect(c.username).toBe(mine.roleName);
      expect(c.DATABASE_URL).toBe(
        `postgresql://${c.username}:${c.password}@${target.host}:${target.port}/${target.database}?sslmode=disable`,
      );
      expect((await target.as(c.username!, c.password!, 'SELECT item FROM orders')).rows).toEqual([{ item: 'book' }]);
      // Granted SELECT only.
      await expect(target.as(c.username!, c.password!, `INSERT INTO orders VALUES (2, 'pen')`)).rejects.toMatchObject({ code: '42501' });
    }
    expect(creds[0]!.password).not.toBe(creds[1]!.password);
    const view = await eventually('provisioned on both', async () => {
      const v = await status('orders');
      return v.summary.provisioned === 2 ? v : undefined;
    });
    expect(view.summary.converged).toBe(true);
    // Audited as system:leases, names and role only.
    const audit = await t.app.get(AuditService).list({ action: 'lease.issue' }, 50);
    expect(audit.filter((r) => r.actorName === 'system:leases' && r.outcome === 'success').length).toBeGreaterThanOrEqual(2);
    for (const r of audit) for (const c of creds) expect(JSON.stringify(r)).not.toContain(c.password);
  });

  it('two replicas sweeping at once issue each pair once', async () => {
    const b = await startTestApp({
      reuse: { databaseUrl: t.databaseUrl, keyLabelPrefix: t.keyLabelPrefix },
      env: { SIGIL_LEASE_SWEEP_INTERVAL_MS: '100', SIGIL_LEASE_MIN_TTL_S: '5', SIGIL_LEASE_DEADLINE_S: '3' },
    });
    try {
      for (let i = 0; i < 5; i++)
        await secrets.create(admin, project, 'orders', {
          name: `replicated-${i}`,
          dynamic: {
            connection: 'orders-db',
            creationStatements: CREATE,
            ttlSeconds: 3600,
            renewBeforeSeconds: 600,
            graceSeconds: 60,
            keys: KEYS,
          },
        });
      const mine = async () => (await leasesOf('orders')).filter((l) => l.secret?.startsWith('replicated-'));
      await eventually('every pair active', async () => holds((await mine()).filter((l) => l.state === 'active').length === 10));
      await new Promise((r) => setTimeout(r, 1_000)); // more sweeps of both replicas
      const all = await mine();
      expect(all).toHaveLength(10);
      expect(all.every((l) => l.state === 'active' && l.serial === 1)).toBe(true);
      const issued = (await t.app.get(AuditService).list({ action: 'lease.issue', outcome: 'success' }, 500)).filter((r) =>
        r.target?.includes('secret=replicated-'),
      );
      expect(issued).toHaveLength(10);
    } finally {
      await b.close();
    }
  });

  it('renews before expiry: the new credential works, the old one stops after the cluster applied the new one and the grace passed', async () => {
    await secrets.create(admin, project, 'renewing', {
      name: 'renewing-db',
      dynamic: { connection: 'orders-db', creationStatements: CREATE, ttlSeconds: 30, renewBeforeSeconds: 24, graceSeconds: 2, keys: KEYS },
    });
    const agent = agents[0]!;
    await publications.publish(admin, project, 'renewing', { clusters: [agent.cluster] });
    const first = await eventually('the first credential', () => credential(agent, 'renewing-db'));
    expect(first.username).toBeDefined();
    // Renewal at 6 s: a second lease, delivered as the cluster's version 2.
    const second = await eventually(
      'the renewed credential is delivered',
      async () => {
        const c = await credential(agent, 'renewing-db');
        return c && c.username !== first.username ? c : undefined;
      },
      20_000,
      500,
    );
    await target.as(second.username!, second.password!, 'SELECT 1');
    const old = await eventually(
      'the old lease is revoked once applied + grace',
      async () => {
        const l = (await leasesOf('renewing')).find((x) => x.roleName === first.username);
        return l?.state === 'revoked' ? l : undefined;
      },
      15_000,
    );
    expect(old.revokeReason).toBe('superseded');
    expect(old.serial).toBe(1);
    // Revoked well before its own expiry (30 s): the role is gone.
    expect(new Date(old.expiresAt).getTime()).toBeGreaterThan(Date.now());
    await expect(target.as(first.username!, first.password!, 'SELECT 1')).rejects.toThrow();
    expect(await target.roles()).not.toContain(first.username);
    await publications.unpublish(admin, project, 'renewing', { clusters: [agent.cluster] });
  });

  it('a crash between intent and role creation, or between creation and activation, leaves no orphan role', async () => {
    const issuer = t.app.get(LeaseIssuer);
    const leftBehind: string[] = [];
    // (a) Killed after the intents were written: no role was created.
    issuer.faults.afterIntents = (intents) => {
      leftBehind.push(...intents.map((i) => i.roleName));
      issuer.faults.afterIntents = undefined;
      return Promise.reject(new Error('killed after intents'));
    };
    await secrets.create(admin, project, 'orders', {
      name: 'crash-a',
      dynamic: {
        connection: 'orders-db',
        creationStatements: CREATE,
        ttlSeconds: 3600,
        renewBeforeSeconds: 600,
        graceSeconds: 60,
        keys: KEYS,
      },
    });
    await eventually('the crash happened', () => holds(leftBehind.length === 2));
    // (b) Killed after the roles were created, before activation.
    const created: string[] = [];
    issuer.faults.afterRoles = (intents) => {
      created.push(...intents.map((i) => i.roleName));
      issuer.faults.afterRoles = undefined;
      return Promise.reject(new Error('killed after roles'));
    };
    await secrets.create(admin, project, 'orders', {
      name: 'crash-b',
      dynamic: {
        connection: 'orders-db',
        creationStatements: CREATE,
        ttlSeconds: 3600,
        renewBeforeSeconds: 600,
        graceSeconds: 60,
        keys: KEYS,
      },
    });
    await eventually('the second crash happened', () => holds(created.length === 2));
    expect(await target.roles()).toEqual(expect.arrayContaining(created));
    // After the deadline (3 s) the recovery pass revokes the intents, then fresh ones are issued.
    for (const name of ['crash-a', 'crash-b']) {
      await eventually(
        `${name}: recovered and re-issued`,
        async () => {
          const ls = (await leasesOf('orders')).filter((l) => l.secret === name);
          const interrupted = ls.filter((l) => l.state === 'revoked' && l.revokeReason === 'interrupted');
          const active = ls.filter((l) => l.state === 'active');
          return holds(interrupted.length === 2 && active.length === 2);
        },
        20_000,
      );
    }
    const roles = await target.roles();
    for (const r of [...leftBehind, ...created]) expect(roles).not.toContain(r);
    // Every role that exists is named by a live lease.
    const { rows } = await sigilDb.query<{ role_name: string }>(
      `SELECT role_name FROM credential_leases WHERE state IN ('intent', 'active', 'superseded', 'revoking')`,
    );
    expect(roles.filter((r) => !rows.some((x) => x.role_name === r))).toEqual([]);
  });

  it('the database down: failed with a reason, other apps unaffected; converges when it is back', async () => {
    // The same database through a relay the test takes down: a connection that holds live roles
    // cannot be moved to another port (409 connection_has_live_roles), and a database does go down.
    const relay = (relayed = await TcpProxy.start(target.host, target.port));
    const connections = t.app.get(ConnectionsService);
    await connections.create(admin, project, target.connectionRequest('relayed-db', { port: relay.port, suffix: 'relay' }));
    await expect(connections.update(admin, project, 'orders-db', { port: relay.port }, undefined)).rejects.toMatchObject({
      code: 'admin_password_required',
    });
    await expect(
      connections.update(admin, project, 'orders-db', { port: relay.port, adminPassword: target.adminPassword }, undefined),
    ).rejects.toMatchObject({ code: 'connection_has_live_roles' });
    relay.takeDown();
    try {
      await secrets.create(admin, project, 'orders', {
        name: 'while-down',
        dynamic: {
          connection: 'relayed-db',
          creationStatements: CREATE,
          ttlSeconds: 3600,
          renewBeforeSeconds: 600,
          graceSeconds: 60,
          keys: KEYS,
        },
      });
      const view = await eventually('failed on both clusters, with the reason', async () => {
        const v = await status('orders');
        return v.summary.failed === 2 ? v : undefined;
      });
      for (const d of view.deliveries) expect(d.reason).toMatch(/^LeaseFailed: while-down: unreachable: /);
      const failed = (await leasesOf('orders', { state: 'failed' })).filter((l) => l.secret === 'while-down');
      expect(failed.length).toBeGreaterThanOrEqual(2);
      for (const l of failed) expect(l.lastError).toMatch(/^unreachable: /);
      // Another app still converges.
      await secrets.update(admin, project, 'typed', 'typed-config', { data: { LOG_LEVEL: 'debug' } }, undefined);
      for (const agent of agents)
        await eventually('typed secret delivered', async () =>
          holds((await agent.sync()).secrets.get('shop/typed-config')?.LOG_LEVEL === 'debug'),
        );
      await eventually('typed app provisioned', async () => holds((await status('typed')).summary.provisioned === 2));
    } finally {
      relay.restore();
    }
    await eventually(
      'converged once the database is back',
      async () => {
        const ls = (await leasesOf('orders', { state: 'active' })).filter((l) => l.secret === 'while-down');
        return holds(ls.length === 2);
      },
      30_000,
    );
    for (const agent of agents) {
      const c = await eventually('delivered', async () => {
        const r = await agent.sync();
        return r.secrets.get('shop/while-down');
      });
      seen.push(c.password!);
      await target.as(c.username!, c.password!, 'SELECT 1');
    }
  });

  it('left to expire unrenewed (the database unreachable): the credential stops working at its VALID UNTIL, and the lease says so', async () => {
    // A connection of its own through a relay, taken down once the first credential is delivered:
    // every renewal fails, and at expiry the revocation cannot reach the database either.
    const relay = await TcpProxy.start(target.host, target.port);
    try {
      await t.app
        .get(ConnectionsService)
        .create(admin, project, target.connectionRequest('expiring-db', { port: relay.port, suffix: 'exp' }));
      await t.app.get(AppsService).create(admin, project, { name: 'expiring', namespace: 'shop', deliveryMode: 'env' });
      await secrets.create(admin, project, 'expiring', {
        name: 'expiring-db',
        dynamic: {
          connection: 'expiring-db',
          creationStatements: CREATE,
          ttlSeconds: 12,
          renewBeforeSeconds: 8,
          graceSeconds: 2,
          keys: KEYS,
        },
      });
      const agent = agents[0]!;
      await publications.publish(admin, project, 'expiring', { clusters: [agent.cluster] });
      const first = await eventually('the first credential', () => credential(agent, 'expiring-db'));
      const [lease] = await leasesOf('expiring', { state: 'active' });
      expect(lease!.roleName).toBe(first.username);
      const expiresAt = new Date(lease!.expiresAt).getTime();
      relay.takeDown();

      // Renewal (4 s after the issue) fails, with the reason; the credential in hand still works
      // (logged in directly: only Sigil's way to the database is down) and its lease is active.
      const failed = await eventually(
        'a failed renewal',
        async () => (await leasesOf('expiring', { state: 'failed' }))[0],
        Math.max(expiresAt - Date.now(), 1_000),
      );
      expect(failed.lastError).toMatch(/^unreachable: /);
      expect(failed.serial).toBeGreaterThan(1);
      expect(Date.now()).toBeLessThan(expiresAt - 500); // what follows is still before the expiry
      await target.as(first.username!, first.password!, 'SELECT 1');
      expect((await leasesOf('expiring')).find((l) => l.id === lease!.id)?.state).toBe('active');

      // Past VALID UNTIL, PostgreSQL refuses it although the role still exists (nothing could drop it).
      await new Promise((r) => setTimeout(r, expiresAt - Date.now() + 300));
      await expect(target.as(first.username!, first.password!, 'SELECT 1')).rejects.toThrow(/password authentication failed/);
      expect(await target.roles(`${target.prefix.slice(0, -1)}exp_`)).toContain(first.username);
      // At the centre it is no longer active: expired, being revoked, with why the revocation waits.
      const expired = await eventually('the lease is revoking (expired)', async () => {
        const l = (await leasesOf('expiring')).find((x) => x.id === lease!.id);
        return l?.state === 'revoking' && l.lastError ? l : undefined;
      });
      expect(expired).toMatchObject({ revokeReason: 'expired', revokedAt: null });
      expect(expired.lastError).toMatch(/^unreachable: /);
      expect(await leasesOf('expiring', { state: 'active' })).toEqual([]);
      // The cluster no longer holds it, and publication status says why.
      await eventually('the expired credential withdrawn from the cluster', async () =>
        holds((await credential(agent, 'expiring-db')) === undefined),
      );
      const view = await eventually('failed, with the reason', async () => {
        const v = await status('expiring');
        return v.summary.failed === 1 ? v : undefined;
      });
      expect(view.deliveries[0]!.reason).toMatch(/^LeaseFailed: expiring-db: unreachable: /);

      // The database back: the expired role is dropped, and a fresh credential delivered.
      relay.restore();
      await eventually(
        'the expired lease revoked',
        async () => holds((await leasesOf('expiring')).find((l) => l.id === lease!.id)?.state === 'revoked'),
        30_000,
        250,
      );
      expect(await target.roles(`${target.prefix.slice(0, -1)}exp_`)).not.toContain(first.username);
      const fresh = await eventually(
        'a fresh credential',
        async () => {
          const c = await credential(agent, 'expiring-db');
          return c && c.username !== first.username ? c : undefined;
        },
        30_000,
        250,
      );
      await target.as(fresh.username!, fresh.password!, 'SELECT 1');
      await publications.unpublish(admin, project, 'expiring', { clusters: [agent.cluster] });
      await eventually('unpublished: no role left', async () =>
        holds((await target.roles(`${target.prefix.slice(0, -1)}exp_`)).length === 0),
      );
    } finally {
      await relay.close();
    }
  }, 90_000);

  it('revokes by hand: the role is dropped within seconds and a fresh credential is issued', async () => {
    const agent = agents[1]!;
    const [lease] = await leasesOf('orders', { cluster: agent.cluster, state: 'active' }).then((ls) =>
      ls.filter((l) => l.secret === 'orders-db'),
    );
    const c = await credential(agent);
    expect(c!.username).toBe(lease!.roleName);
    const r = await leases.revoke(admin, project, 'orders', lease!.id);
    expect(r.lease.state).toBe('revoking');
    await eventually('revoked', async () => holds((await leasesOf('orders')).find((l) => l.id === lease!.id)?.state === 'revoked'), 10_000);
    await expect(target.as(c!.username!, c!.password!, 'SELECT 1')).rejects.toThrow();
    const fresh = await eventually('a fresh credential', async () => {
      const n = await credential(agent);
      return n && n.username !== c!.username ? n : undefined;
    });
    await target.as(fresh.username!, fresh.password!, 'SELECT 1');
  });

  it('disabling a cluster or unpublishing revokes its credentials within seconds', async () => {
    const [eu, us] = agents as [TestAgent, TestAgent];
    const euCred = (await credential(eu))!;
    const usCred = (await credential(us))!;
    const started = Date.now();
    await clusters.setEnabled(eu.cluster, false, undefined);
    await eventually("the disabled cluster's credential stops working", async () => {
      try {
        await target.as(euCred.username!, euCred.password!, 'SELECT 1');
        return undefined;
      } catch {
        return true;
      }
    });
    expect(Date.now() - started).toBeLessThan(5_000);
    const unpublished = Date.now();
    await publications.unpublish(admin, project, 'orders', { clusters: [us.cluster] });
    await eventually("the unpublished cluster's credential stops working", async () => {
      try {
        await target.as(usCred.username!, usCred.password!, 'SELECT 1');
        return undefined;
      } catch {
        return true;
      }
    });
    expect(Date.now() - unpublished).toBeLessThan(5_000);
    const live = await leasesOf('orders', { state: 'active' });
    expect(live).toEqual([]);
    const revoked = (await leasesOf('orders', { state: 'revoked' })).filter((l) => l.revokeReason === 'not_desired');
    expect(revoked.length).toBeGreaterThanOrEqual(2);
    await clusters.setEnabled(eu.cluster, true, undefined);
  });

  it('a connection that dynamic secrets use cannot be deleted', async () => {
    await expect(t.app.get(ConnectionsService).delete(admin, project, 'orders-db', undefined)).rejects.toMatchObject({
      code: 'connection_in_use',
    });
  });

  it('the reaper drops a role a lease names but no live one; a role no lease names is not Sigil-made and stays', async () => {
    const { rows } = await sigilDb.query<{ role_name: string }>(
      `SELECT role_name FROM credential_leases WHERE state = 'revoked' AND starts_with(role_name, $1) LIMIT 1`,
      [target.prefix],
    );
    const revoked = rows[0]!.role_name;
    // As the admin role, like the role of an issue that finished after its lease was given up.
    await target.asAdmin(`CREATE ROLE ${revoked} LOGIN`);
    // The prefix is the connection's, but no lease names these: another installation's, or a person's.
    const strangers = [`${target.prefix}${'0'.repeat(20)}`, `${target.prefix}reporting`];
    for (const r of strangers) await target.asAdmin(`CREATE ROLE ${r} LOGIN`);
    try {
      await t.app.get(LeaseSweep).reap();
      const roles = await target.roles();
      expect(roles).not.toContain(revoked);
      expect(roles).toEqual(expect.arrayContaining(strangers));
    } finally {
      for (const r of strangers) await target.asAdmin(`DROP ROLE IF EXISTS ${r}`);
    }
  });

  it("canary: no delivered password is in Sigil's database or Redis", async () => {
    expect(seen.length).toBeGreaterThanOrEqual(4);
    const all = (await databaseDump(t.databaseUrl)) + (await redisDump(t.keyLabelPrefix));
    for (const p of seen) for (const spelled of spellings(p)) expect(all.includes(spelled)).toBe(false);
  });
});
