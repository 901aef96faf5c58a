import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type * as k8s from '@kubernetes/client-node';
import pg from 'pg';
import { AgentProcess } from '../harness/agent-process.js';
import { ApiClient } from '../harness/api-client.js';
import { eventually, holds } from '../harness/eventually.js';
import { ADMIN_TOKEN, startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import { databaseDump, redisDump, spellings } from '../harness/secret-scan.js';
import { runSigil } from '../harness/sigil-cli.js';
import { TargetDatabase } from '../harness/target-database.js';
import { TestAgent } from '../harness/test-agent.js';
import { createNamespace, kubeConfig, uniqueName } from '../harness/test-env.js';

// Dynamic secrets end to end: a real control plane process (PostgreSQL, SoftHSM, Redis), a real
// target database registered over REST, a real agent writing to a real kube-apiserver, and a
// second cluster (a test agent: one kube-apiserver cannot hold two clusters' Secrets of one
// namespace). Each cluster gets its own working credential; unpublishing deletes the Secret and
// drops the role; no password is anywhere but in the clusters.

const SWEEP = { SIGIL_LEASE_SWEEP_INTERVAL_MS: '200', SIGIL_LEASE_MIN_TTL_S: '5' };

describe('dynamic secrets through a real agent', () => {
  let cp: RunningControlPlane;
  let api: ApiClient;
  let core: k8s.CoreV1Api;
  let target: TargetDatabase;
  let agent: AgentProcess | undefined;
  let second: TestAgent | undefined;
  const project = uniqueName('d');
  const ns = uniqueName('dyn').slice(0, 40);
  const cluster = uniqueName('edge');
  const other = uniqueName('edge2');
  const delivered: string[] = [];
  const cliOutput: string[] = [];
  /** The built `sigil` CLI against this control plane, as the admin; its output is scanned for passwords below. */
  const sigil = async (...args: string[]) => {
    const r = await runSigil(args, { SIGIL_SERVER: cp.cp.url, SIGIL_TOKEN: ADMIN_TOKEN, HOME: tmpdir() });
    cliOutput.push(r.stdout, r.stderr);
    return r;
  };

  const k8sSecret = async () => {
    const s = await core.readNamespacedSecret({ namespace: ns, name: 'orders-db' }).catch(() => undefined);
    if (!s?.data) return undefined;
    return {
      version: s.metadata?.annotations?.['sigil.dev/version'],
      data: Object.fromEntries(Object.entries(s.data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()])),
    };
  };
  const login = async (url: string) => {
    const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3_000 });
    c.on('error', () => undefined);
    await c.connect();
    try {
      return (await c.query<{ item: string }>('SELECT item FROM orders')).rows;
    } finally {
      await c.end().catch(() => undefined);
    }
  };

  beforeAll(async () => {
    const k8sLib = await import('@kubernetes/client-node');
    core = (await kubeConfig()).makeApiClient(k8sLib.CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: ns } } });
    const agentNs = await createNamespace('sigil-agent');
    target = await TargetDatabase.create();
    cp = await startControlPlane(SWEEP);
    api = cp.admin;
    expect((await api.post('/projects', { name: project })).status).toBe(201);
    expect((await api.put(`/projects/${project}/cluster-selector`, { selector: {} })).status).toBe(204);
    expect((await api.put(`/projects/${project}/namespaces`, { namespaces: [ns] })).status).toBe(200);
    expect((await api.post(`/projects/${project}/apps`, { name: 'web', namespace: ns, deliveryMode: 'env' })).status).toBe(201);
    expect((await api.post(`/projects/${project}/connections`, target.connectionRequest('orders-db'))).status).toBe(201);
    const dir = await mkdtemp(path.join(tmpdir(), 'sigil-dyn-'));
    const caPem = (await api.get('/agents/trust')).body.caCertificatePem as string;
    await writeFile(path.join(dir, 'ca.pem'), caPem);
    for (const name of [cluster, other]) expect((await api.post('/clusters', { name, labels: {} })).status).toBe(201);
    await writeFile(path.join(dir, 'token'), (await api.post(`/clusters/${cluster}/enrollment-tokens`)).body.token, { mode: 0o600 });
    agent = await AgentProcess.start({
      controlPlane: cp.cp.grpcAddress,
      caFile: path.join(dir, 'ca.pem'),
      cluster,
      stateSecret: `${agentNs}/sigil-agent-state`,
      namespaces: [ns],
      enrollmentTokenFile: path.join(dir, 'token'),
    });
    second = new TestAgent(cp.cp.grpcAddress, caPem, other);
    await second.enroll({ $case: 'bootstrapToken', value: (await api.post(`/clusters/${other}/enrollment-tokens`)).body.token });
    await second.sync();
    await eventually('enrolled', async () => holds((await api.get(`/clusters/${cluster}`)).body.state === 'enrolled'));
  }, 120_000);

  afterAll(async () => {
    second?.close();
    await agent?.stop();
    await cp?.stop();
    await target?.drop();
  });

  it('creates a dynamic secret over REST; bad specs answer 400 with a code, typed writes 409', async () => {
    const base = `/projects/${project}/apps/web/secrets`;
    const dynamic = {
      connection: 'orders-db',
      creationStatements: [
        'CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}',
        'GRANT SELECT ON orders TO {{name}}',
      ],
      ttlSeconds: 3600,
      renewBeforeSeconds: 600,
      graceSeconds: 60,
      keys: {
        username: '{{username}}',
        password: '{{password}}',
        DATABASE_URL: 'postgresql://{{username}}:{{password}}@{{host}}:{{port}}/{{database}}?sslmode={{sslmode}}',
      },
    };
    const bad = await api.post(base, { name: 'bad', dynamic: { ...dynamic, keys: { url: '{{secret}}' } } });
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ code: 'validation_failed', errors: [{ field: 'dynamic' }] });
    expect((await api.post(base, { name: 'bad', dynamic: { ...dynamic, ttlSeconds: 1 } })).body.code).toBe('invalid_dynamic_secret');
    expect((await api.post(base, { name: 'bad', dynamic: { ...dynamic, connection: 'nope' } })).body.code).toBe('unknown_connection');
    const created = await api.post(base, { name: 'orders-db', dynamic });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      keys: ['DATABASE_URL', 'password', 'username'],
      dynamic: { connection: 'orders-db', ttlSeconds: 3600 },
    });
    const put = await api.put(`${base}/orders-db`, { data: { password: 'typed' } });
    expect([put.status, put.body.code]).toEqual([409, 'secret_is_dynamic']);
  });

  it('publishes to two clusters: each Secret holds a different credential that logs in', async () => {
    expect((await api.post(`/projects/${project}/apps/web/publish`, { clusters: [cluster, other] })).status).toBe(200);
    const mine = await eventually('the Kubernetes Secret holds the credential', k8sSecret, 30_000);
    expect(mine.version).toBe('1');
    delivered.push(mine.data.password!);
    expect(mine.data.DATABASE_URL).toBe(
      `postgresql://${mine.data.username}:${mine.data.password}@${target.host}:${target.port}/${target.database}?sslmode=disable`,
    );
    expect(await login(mine.data.DATABASE_URL!)).toEqual([{ item: 'book' }]);
    const theirs = await eventually('the second cluster holds its own', async () => (await second!.sync()).secrets.get(`${ns}/orders-db`));
    delivered.push(theirs.password!);
    expect(theirs.username).not.toBe(mine.data.username);
    expect(theirs.password).not.toBe(mine.data.password);
    expect(await login(theirs.DATABASE_URL!)).toEqual([{ item: 'book' }]);

    const leases = (await api.get(`/projects/${project}/apps/web/leases?state=active`)).body.items as Array<Record<string, unknown>>;
    expect(leases.map((l) => [l.cluster, l.serial, l.state]).sort()).toEqual(
      [
        [cluster, 1, 'active'],
        [other, 1, 'active'],
      ].sort(),
    );
    const onCluster = (await api.get(`/clusters/${cluster}/leases`)).body.items as Array<Record<string, unknown>>;
    expect(onCluster).toHaveLength(1);
    expect(onCluster[0]).toMatchObject({ role: mine.data.username, project, app: 'web', secret: 'orders-db' });
    const status = await eventually('provisioned on both', async () => {
      const s = (await api.get(`/projects/${project}/apps/web/publication`)).body;
      return s.summary.provisioned === 2 ? s : undefined;
    });
    expect(status.summary.failed).toBe(0);
  });

  it('unpublish from the real cluster: its Secret is deleted and its role dropped; the other cluster keeps working', async () => {
    const mine = (await k8sSecret())!;
    expect((await api.post(`/projects/${project}/apps/web/unpublish`, { clusters: [cluster] })).status).toBe(200);
    await eventually('the Kubernetes Secret is deleted', async () => holds((await k8sSecret()) === undefined), 30_000);
    await eventually('the role is gone', async () => holds(!(await target.roles()).includes(mine.data.username!)), 15_000);
    await expect(login(mine.data.DATABASE_URL!)).rejects.toThrow();
    const theirs = (await second!.sync()).secrets.get(`${ns}/orders-db`)!;
    expect(await login(theirs.DATABASE_URL!)).toEqual([{ item: 'book' }]);
    const revoked = (await api.get(`/clusters/${cluster}/leases?state=revoked`)).body.items as Array<Record<string, unknown>>;
    expect(revoked[0]).toMatchObject({ role: mine.data.username, revokeReason: 'not_desired' });
    const audit = (await api.get('/audit?limit=200')).body.items as Array<{ actor: string; action: string; target: string }>;
    const revokes = audit.filter((e) => e.actor === 'system:leases' && e.action === 'lease.revoke');
    expect(revokes.some((e) => e.target.includes(`role=${mine.data.username}`))).toBe(true);
  });

  it('sigil leases lists the leases and revokes one: its role is dropped and the cluster gets a fresh credential', async () => {
    const before = (await second!.sync()).secrets.get(`${ns}/orders-db`)!;
    const listed = await sigil('-o', 'json', 'leases', 'list', '--project', project, '--app', 'web', '--state', 'active');
    expect(listed).toMatchObject({ code: 0, stderr: '' });
    const active = JSON.parse(listed.stdout) as Array<Record<string, unknown>>;
    expect(active.map((l) => [l.cluster, l.serial, l.role])).toEqual([[other, 1, before.username]]);
    const id = active[0]!.id as string;
    const table = await sigil('leases', 'list', '--cluster', other);
    expect(table.code).toBe(0);
    expect(table.stdout.split('\n')[0]).toMatch(/^ID +PROJECT +APP +SECRET +SERIAL +STATE +ROLE /);
    expect(table.stdout).toMatch(new RegExp(`^${id} +${project} +web +orders-db +1 +active +${before.username} `, 'm'));

    const revoked = await sigil('leases', 'revoke', '--project', project, '--app', 'web', id);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toMatch(
      new RegExp(`^lease ${id} \\(orders-db on ${other}, serial 1, role ${before.username}\\): revok(ing|ed)\n$`),
    );
    await eventually('the revoked role is gone', async () => holds(!(await target.roles()).includes(before.username!)), 15_000);
    await expect(login(before.DATABASE_URL!)).rejects.toThrow();
    const fresh = await eventually('a fresh credential for the cluster', async () => {
      const s = (await second!.sync()).secrets.get(`${ns}/orders-db`);
      return s?.username && s.username !== before.username ? s : undefined;
    });
    delivered.push(fresh.password!);
    expect(await login(fresh.DATABASE_URL!)).toEqual([{ item: 'book' }]);
    const after = JSON.parse((await sigil('-o', 'json', 'leases', 'list', '--cluster', other)).stdout) as Array<Record<string, unknown>>;
    expect(after.map((l) => [l.serial, l.state, l.revokeReason])).toEqual([
      [2, 'active', null],
      [1, 'revoked', 'manual'],
    ]);
    const unknown = await sigil('leases', 'revoke', '--project', project, '--app', 'web', '00000000-0000-4000-8000-000000000000');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('(lease_not_found)');
  });

  it('no generated password is in PostgreSQL rows, Redis, the control plane’s log, any API answer or CLI output', async () => {
    expect(delivered).toHaveLength(3);
    const needles = delivered.flatMap(spellings);
    const dump = await databaseDump(cp.databaseUrl);
    expect(dump).toContain('orders-db'); // the scan sees the secret's rows
    const redis = await redisDump(cp.redisPrefix);
    const logs = cp.cp.logs();
    const answers = ApiClient.seen.join('\n');
    const cli = cliOutput.join('\n');
    expect(cli).toContain(project); // the scan sees the CLI's listings
    for (const n of needles) {
      expect(cli).not.toContain(n);
      expect(dump).not.toContain(n);
      expect(redis).not.toContain(n);
      expect(logs).not.toContain(n);
      expect(answers).not.toContain(n);
    }
  });
});

describe('dynamic secrets across a SIGKILL of the control plane', () => {
  let cp: RunningControlPlane;
  let target: TargetDatabase;
  let agent: TestAgent | undefined;
  let db: pg.Client;
  const project = uniqueName('k');
  const cluster = uniqueName('edge');
  const ENV = { ...SWEEP, SIGIL_LEASE_DEADLINE_S: '4', SIGIL_FAULT_INJECTION: '1' };
  const leases = async () =>
    (
      await db.query<{ role_name: string; state: string; revoke_reason: string | null; serial: number }>(
        `SELECT role_name, state, revoke_reason, serial FROM credential_leases ORDER BY serial`,
      )
    ).rows;

  beforeAll(async () => {
    target = await TargetDatabase.create();
    cp = await startControlPlane({ ...ENV, SIGIL_LEASE_FAULT: 'pause-after-intents' });
    const api = cp.admin;
    db = new pg.Client({ connectionString: cp.databaseUrl });
    await db.connect();
    expect((await api.post('/projects', { name: project })).status).toBe(201);
    expect((await api.put(`/projects/${project}/cluster-selector`, { selector: {} })).status).toBe(204);
    expect((await api.put(`/projects/${project}/namespaces`, { namespaces: ['shop'] })).status).toBe(200);
    expect((await api.post(`/projects/${project}/apps`, { name: 'web', namespace: 'shop', deliveryMode: 'env' })).status).toBe(201);
    expect((await api.post(`/projects/${project}/connections`, target.connectionRequest('orders-db'))).status).toBe(201);
    expect((await api.post('/clusters', { name: cluster, labels: {} })).status).toBe(201);
    agent = new TestAgent(cp.cp.grpcAddress, (await api.get('/agents/trust')).body.caCertificatePem, cluster);
    await agent.enroll({ $case: 'bootstrapToken', value: (await api.post(`/clusters/${cluster}/enrollment-tokens`)).body.token });
    await agent.sync();
  }, 120_000);

  afterAll(async () => {
    agent?.close();
    await db?.end();
    await cp?.stop();
    await target?.drop();
  });

  it('killed after the intent, then after the role was created: no orphan role, and the restarted control plane converges', async () => {
    const grpcPort = cp.cp.grpcAddress.split(':').at(-1)!;
    const api = cp.admin;
    expect(
      (
        await api.post(`/projects/${project}/apps/web/secrets`, {
          name: 'orders-db',
          dynamic: {
            connection: 'orders-db',
            creationStatements: [
              'CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}',
              'GRANT SELECT ON orders TO {{name}}',
            ],
            ttlSeconds: 3600,
            renewBeforeSeconds: 600,
            graceSeconds: 60,
            keys: { username: '{{username}}', password: '{{password}}' },
          },
        })
      ).status,
    ).toBe(201);
    expect((await api.post(`/projects/${project}/apps/web/publish`, { clusters: [cluster] })).status).toBe(200);

    // 1. SIGKILL between the intent and the role.
    let proc = cp.cp;
    await eventually('paused after the intent', () => holds(proc.logs().includes('lease issue paused by fault injection')), 20_000);
    await proc.stop('SIGKILL');
    const [first] = await leases();
    expect(first).toMatchObject({ state: 'intent', serial: 1 });
    expect(await target.roles()).toEqual([]);

    // 2. Restarted (same gRPC port), it recovers that intent, then is killed after creating the next role.
    proc = (await cp.startReplica({ ...ENV, SIGIL_GRPC_PORT: grpcPort, SIGIL_LEASE_FAULT: 'pause-after-roles' })).cp;
    await eventually('paused after the role', () => holds(proc.logs().includes('lease issue paused by fault injection')), 30_000);
    await proc.stop('SIGKILL');
    const afterSecond = await leases();
    expect(afterSecond.find((l) => l.role_name === first!.role_name)).toMatchObject({ state: 'revoked', revoke_reason: 'interrupted' });
    const second = afterSecond.find((l) => l.state === 'intent')!;
    expect(await target.roles()).toEqual([second.role_name]); // created, never activated

    // 3. Restarted without the fault: the orphaned role is dropped and a fresh credential delivered.
    const restarted = await cp.startReplica({ ...ENV, SIGIL_LEASE_FAULT: 'none', SIGIL_GRPC_PORT: grpcPort });
    await eventually('an active lease', async () => holds((await leases()).some((l) => l.state === 'active')), 30_000).catch(
      async (err: unknown) => {
        throw new Error(`${String(err)}; leases: ${JSON.stringify(await leases())}; log: ${restarted.cp.logs().slice(-1500)}`);
      },
    );
    // A fresh channel to the new process (the old one's backoff would only delay).
    agent!.useCertificate(agent!.enrollment!.certificateDer);
    const final = await eventually(
      'a working credential delivered',
      async () => {
        const creds = (await agent!.sync()).secrets.get('shop/orders-db');
        return creds?.username ? creds : undefined;
      },
      45_000,
      500,
    );
    expect((await target.as(final.username!, final.password!, 'SELECT item FROM orders')).rows).toEqual([{ item: 'book' }]);
    await eventually('the interrupted role dropped', async () => holds(!(await target.roles()).includes(second.role_name)), 20_000);
    const rows = await leases();
    expect(rows.find((l) => l.role_name === second.role_name)).toMatchObject({ state: 'revoked', revoke_reason: 'interrupted' });
    // Every role in the database is the one active lease's.
    expect(await target.roles()).toEqual(rows.filter((l) => l.state === 'active').map((l) => l.role_name));
    expect((await restarted.admin.get(`/projects/${project}/apps/web/leases?state=active`)).body.items).toHaveLength(1);
  }, 150_000);
});
