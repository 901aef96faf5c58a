import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type * as k8s from '@kubernetes/client-node';
import { Redis } from 'ioredis';
import pg from 'pg';
import { AgentProcess } from '../harness/agent-process.js';
import { ApiClient } from '../harness/api-client.js';
import type { ControlPlaneProcess } from '../harness/control-plane-process.js';
import { eventually } from '../harness/eventually.js';
import { startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import { createNamespace, kubeConfig, testEnv, uniqueName } from '../harness/test-env.js';

// Generated static secrets (issue 20), end to end: a real control plane (PostgreSQL, SoftHSM,
// Redis) and a real agent writing to a real kube-apiserver. Values come from the HSM's RNG,
// reach the cluster with the asked length and alphabet, are rotated on request and on schedule
// (the sweep, as system:rotation), exactly once with two replicas sweeping, also across a
// SIGKILL and a Redis flush; and no generated value is anywhere but in the cluster.

const SWEEP = { SIGIL_ROTATION_SWEEP_INTERVAL_MS: '200' };
const SPEC = {
  keys: [
    { key: 'PASSWORD', kind: 'password', length: 32 },
    { key: 'PIN', kind: 'password', length: 24, alphabet: '0123456789' },
    { key: 'API_KEY', kind: 'hex', length: 16 },
    { key: 'SIGNING_KEY', kind: 'bytes-base64', length: 32 },
  ],
  rotateEveryDays: 30,
};
const SHAPES: Record<string, RegExp> = {
  PASSWORD: /^[A-Za-z0-9]{32}$/,
  PIN: /^[0-9]{24}$/,
  API_KEY: /^[0-9a-f]{32}$/,
  SIGNING_KEY: /^[A-Za-z0-9+/]{43}=$/,
};
const DAY_MS = 86_400_000;

describe('generated secrets with a rotation schedule', () => {
  let cp: RunningControlPlane;
  let api: ApiClient;
  let core: k8s.CoreV1Api;
  let db: pg.Client;
  let agent: AgentProcess | undefined;
  const processes: ControlPlaneProcess[] = [];
  const project = uniqueName('g');
  const ns = uniqueName('gen').slice(0, 40);
  const cluster = uniqueName('edge');
  /** Every generated value the cluster received (the canaries of the last test). */
  const delivered = new Set<string>();
  const base = () => `/projects/${project}/apps/web/secrets`;

  const readValues = async (): Promise<{ version: string; data: Record<string, string> } | undefined> => {
    const s = await core.readNamespacedSecret({ namespace: ns, name: 'web-creds' }).catch(() => undefined);
    if (!s?.data) return undefined;
    const data = Object.fromEntries(Object.entries(s.data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]));
    return { version: s.metadata?.annotations?.['sigil.dev/version'] ?? '', data };
  };
  /** The cluster's values once it holds `version`; checks their shapes and remembers them. */
  const deliveredVersion = async (version: number, timeoutMs = 20_000) => {
    const got = await eventually(
      `version ${version} in the cluster`,
      async () => {
        const v = await readValues();
        return v?.version === String(version) ? v.data : undefined;
      },
      timeoutMs,
    );
    expect(Object.keys(got).sort()).toEqual(Object.keys(SHAPES).sort());
    for (const [k, re] of Object.entries(SHAPES)) expect(got[k]).toMatch(re);
    for (const v of Object.values(got)) delivered.add(v);
    return got;
  };

  beforeAll(async () => {
    const k8sLib = await import('@kubernetes/client-node');
    core = (await kubeConfig()).makeApiClient(k8sLib.CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: ns } } });
    const agentNs = await createNamespace('sigil-agent');
    cp = await startControlPlane(SWEEP);
    processes.push(cp.cp);
    api = cp.admin;
    db = new pg.Client({ connectionString: cp.databaseUrl });
    await db.connect();

    expect((await api.post('/projects', { name: project })).status).toBe(201);
    expect((await api.put(`/projects/${project}/cluster-selector`, { selector: {} })).status).toBe(204);
    expect((await api.put(`/projects/${project}/namespaces`, { namespaces: [ns] })).status).toBe(200);
    expect((await api.post(`/projects/${project}/apps`, { name: 'web', namespace: ns, deliveryMode: 'env' })).status).toBe(201);
    expect((await api.post(`/projects/${project}/apps`, { name: 'batch', namespace: ns, deliveryMode: 'env' })).status).toBe(201);
    expect((await api.post('/clusters', { name: cluster, labels: {} })).status).toBe(201);
    const dir = await mkdtemp(path.join(tmpdir(), 'sigil-gen-'));
    await writeFile(path.join(dir, 'ca.pem'), (await api.get('/agents/trust')).body.caCertificatePem);
    await writeFile(path.join(dir, 'token'), (await api.post(`/clusters/${cluster}/enrollment-tokens`)).body.token, { mode: 0o600 });
    agent = await AgentProcess.start({
      controlPlane: cp.cp.grpcAddress,
      caFile: path.join(dir, 'ca.pem'),
      cluster,
      stateSecret: `${agentNs}/sigil-agent-state`,
      namespaces: [ns],
      enrollmentTokenFile: path.join(dir, 'token'),
    });
    await eventually('enrolled', async () => ((await api.get(`/clusters/${cluster}`)).body.state === 'enrolled' ? true : undefined));
  }, 120_000);

  afterAll(async () => {
    await agent?.stop();
    await db?.end();
    await cp?.stop();
  });

  it('refuses a bad recipe with 400 and a code, and typed values next to a recipe', async () => {
    const bad = await api.post(base(), { name: 'bad', generate: { keys: [{ key: 'P', kind: 'password', length: 10, alphabet: '01' }] } });
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ code: 'validation_failed', errors: [{ field: 'generate' }] });
    expect(bad.body.detail).toContain('bits of entropy');
    const both = await api.post(base(), { name: 'bad', data: { A: 'x' }, generate: { keys: [{ key: 'P', kind: 'hex', length: 16 }] } });
    expect(both.status).toBe(400);
    expect(both.body.code).toBe('invalid_secret');
    for (const type of ['kubernetes.io/tls', 'kubernetes.io/dockerconfigjson']) {
      const structured = await api.post(base(), { name: 'bad', type, generate: { keys: [{ key: 'tls.key', kind: 'hex', length: 16 }] } });
      expect([type, structured.status, structured.body.code]).toEqual([type, 400, 'invalid_secret']);
    }
    expect((await api.get(`${base()}/bad`)).status).toBe(404);
  });

  it('creates values in the HSM and delivers them with the asked length and alphabet; GET shows the recipe, never a value', async () => {
    const before = Date.now();
    const created = await api.post(base(), { name: 'web-creds', generate: SPEC });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      currentVersion: 1,
      keys: ['API_KEY', 'PASSWORD', 'PIN', 'SIGNING_KEY'],
      generated: {
        keys: [
          { key: 'API_KEY', kind: 'hex', length: 16 },
          { key: 'PASSWORD', kind: 'password', length: 32, alphabet: expect.stringMatching(/^[A-Za-z0-9]{62}$/) },
          { key: 'PIN', kind: 'password', length: 24, alphabet: '0123456789' },
          { key: 'SIGNING_KEY', kind: 'bytes-base64', length: 32 },
        ],
      },
      rotateEveryDays: 30,
    });
    const next = Date.parse(created.body.nextRotationAt);
    expect(next).toBeGreaterThanOrEqual(before + 30 * DAY_MS - 5_000);
    expect(next).toBeLessThanOrEqual(Date.now() + 30 * DAY_MS + 5_000);
    expect(Date.parse(created.body.lastRotatedAt)).toBeGreaterThanOrEqual(before - 5_000);

    await api.post(`/projects/${project}/apps/web/publish`, { clusters: [cluster] });
    const v1 = await deliveredVersion(1);
    const got = await api.get(`${base()}/web-creds`);
    for (const value of Object.values(v1)) {
      expect(created.text).not.toContain(value);
      expect(got.text).not.toContain(value);
    }
    expect((await api.get(`${base()}/web-creds/versions`)).body[0].createdBy).toBe('bootstrap-admin');
  });

  it('refuses typed values for a generated secret (409 secret_is_generated), and rotate-now of a typed one', async () => {
    const put = await api.put(`${base()}/web-creds`, { data: { PASSWORD: 'typed-by-hand' } });
    expect(put.status).toBe(409);
    expect(put.body.code).toBe('secret_is_generated');
    await api.post(base(), { name: 'typed', data: { A: 'b' } });
    const rotate = await api.post(`${base()}/typed/rotate`);
    expect(rotate.status).toBe(409);
    expect(rotate.body.code).toBe('secret_not_generated');
    expect((await api.put(`${base()}/typed/rotation`, { rotateEveryDays: 3 })).body.code).toBe('secret_not_generated');
  });

  it('rotate-now: new values, a new version delivered; set and clear the schedule', async () => {
    const previous = (await readValues())!.data;
    const r = await api.post(`${base()}/web-creds/rotate`);
    expect(r.status).toBe(200);
    expect(r.body.currentVersion).toBe(2);
    const v2 = await deliveredVersion(2);
    for (const k of Object.keys(SHAPES)) expect(v2[k]).not.toBe(previous[k]);

    const cleared = await api.delete(`${base()}/web-creds/rotation`);
    expect(cleared.status).toBe(200);
    expect(cleared.body).toMatchObject({ rotateEveryDays: null, nextRotationAt: null });
    const set = await api.put(`${base()}/web-creds/rotation`, { rotateEveryDays: 7 }, { 'If-Match': `"${cleared.body.version}"` });
    expect(set.status).toBe(200);
    // Counted from the last rotation, not from now.
    expect(Date.parse(set.body.nextRotationAt) - Date.parse(set.body.lastRotatedAt)).toBe(7 * DAY_MS);
    expect((await api.put(`${base()}/web-creds/rotation`, { rotateEveryDays: 0 })).body.code).toBe('validation_failed');
    expect((await api.put(`${base()}/web-creds/rotation`, { rotateEveryDays: 5 }, { 'If-Match': '"1"' })).status).toBe(412);
  });

  it('the sweep rotates a due secret as system:rotation, delivered to the cluster, audited without the value', async () => {
    await db.query(`UPDATE secrets SET next_rotation_at = now() - interval '1 second' WHERE name = 'web-creds'`);
    await deliveredVersion(3);
    const view = (await api.get(`${base()}/web-creds`)).body;
    expect(view).toMatchObject({ currentVersion: 3, rotateEveryDays: 7 });
    expect(Date.parse(view.nextRotationAt)).toBeGreaterThan(Date.now() + 7 * DAY_MS - 60_000);
    expect((await api.get(`${base()}/web-creds/versions`)).body[0]).toMatchObject({ version: 3, createdBy: 'system:rotation' });
    const audit = (await api.get('/audit?limit=200')).body.items as Array<Record<string, unknown>>;
    const sweep = audit.filter((e) => e.actor === 'system:rotation');
    expect(sweep.map((e) => e.outcome).sort()).toEqual(['attempted', 'success']);
    expect(sweep.find((e) => e.outcome === 'success')).toMatchObject({
      action: 'secret.rotate',
      target: `project=${project} app=web secret=web-creds version=3 schedule=due`,
    });
    const status = await eventually('provisioned', async () => {
      const s = (await api.get(`/projects/${project}/apps/web/publication`)).body;
      return s.summary.provisioned === 1 ? s : undefined;
    });
    expect(status.summary.failed).toBe(0);
  });

  it('two replicas sweeping at once rotate each due secret exactly once', async () => {
    const b = await cp.startReplica(SWEEP);
    processes.push(b.cp);
    const N = 30;
    for (let i = 0; i < N; i++) {
      const r = await api.post(`/projects/${project}/apps/batch/secrets`, {
        name: `b${i}`,
        generate: { keys: [{ key: 'TOKEN', kind: 'hex', length: 16 }], rotateEveryDays: 1 },
      });
      expect(r.status).toBe(201);
    }
    const logsBefore = processes.map((p) => p.logs().split('rotated on schedule').length);
    await db.query(
      `UPDATE secrets SET next_rotation_at = now() - interval '1 second' FROM apps a WHERE a.id = secrets.app_id AND a.name = 'batch' AND secrets.name LIKE 'b%'`,
    );
    const count = async () =>
      (
        await db.query(
          `SELECT count(*) FILTER (WHERE s.latest_version = 2)::int AS done, count(*) FILTER (WHERE s.latest_version > 2)::int AS twice
             FROM secrets s JOIN apps a ON a.id = s.app_id WHERE a.name = 'batch'`,
        )
      ).rows[0] as { done: number; twice: number };
    await eventually('all rotated', async () => ((await count()).done === N ? true : undefined), 30_000);
    await new Promise((r) => setTimeout(r, 1_500)); // several more sweeps of both replicas
    expect(await count()).toEqual({ done: N, twice: 0 });
    const perReplica = processes.map((p, i) => p.logs().split('rotated on schedule').length - logsBefore[i]!);
    process.stderr.write(`[generated-secrets] ${N} due secrets rotated by the replicas: ${perReplica.join(' + ')}\n`);
    expect(perReplica.reduce((a, n) => a + n, 0)).toBe(N);
    const audit = (await api.get('/audit?limit=500')).body.items as Array<{ actor: string; outcome: string; target: string }>;
    const batch = audit.filter((e) => e.actor === 'system:rotation' && e.target.includes(' app=batch '));
    expect(batch.filter((e) => e.outcome === 'success')).toHaveLength(N);
    expect(batch.filter((e) => e.outcome === 'attempted')).toHaveLength(N);
  }, 90_000);

  it('a SIGKILL of every replica and a Redis flush lose nothing: the restarted control plane rotates what fell due', async () => {
    const grpcPort = cp.cp.grpcAddress.split(':').at(-1)!;
    await Promise.all(processes.map((p) => p.stop('SIGKILL')));
    await db.query(`UPDATE secrets SET next_rotation_at = now() - interval '1 second' WHERE name = 'web-creds'`);
    const redis = new Redis(testEnv().redis.url);
    try {
      const keys = await redis.keys(`${cp.redisPrefix}*`);
      if (keys.length > 0) await redis.del(...keys);
    } finally {
      redis.disconnect();
    }
    // Same gRPC port, so the agent reconnects to it.
    const restarted = await cp.startReplica({ ...SWEEP, SIGIL_GRPC_PORT: grpcPort });
    processes.push(restarted.cp);
    api = restarted.admin;
    await deliveredVersion(4, 45_000);
    expect((await api.get(`${base()}/web-creds`)).body.currentVersion).toBe(4);
  }, 90_000);

  it('no generated value is in PostgreSQL rows, Redis, the control planes’ logs or any API answer', async () => {
    expect(delivered.size).toBeGreaterThanOrEqual(16); // 4 versions × 4 keys, as the cluster received them
    const spellings = [...delivered].flatMap((v) => [v, Buffer.from(v).toString('base64'), Buffer.from(v).toString('hex')]);

    const { rows: tables } = await db.query<{ t: string }>("SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public'");
    let dump = '';
    for (const { t } of tables) {
      const { rows } = await db.query<{ j: string }>(`SELECT row_to_json(x)::text AS j FROM ${db.escapeIdentifier(t)} x`);
      dump += rows.map((r) => r.j).join('\n');
    }
    expect(dump).toContain('web-creds'); // the scan sees the secret's rows …
    for (const s of spellings) expect(dump).not.toContain(s); // … and none of its values

    const redis = new Redis(testEnv().redis.url);
    let all = '';
    try {
      for (const k of await redis.keys(`${cp.redisPrefix}*`)) {
        const type = await redis.type(k);
        if (type === 'string') all += (await redis.get(k)) ?? '';
        else if (type === 'hash') all += JSON.stringify(await redis.hgetall(k));
        else if (type === 'list') all += (await redis.lrange(k, 0, -1)).join('\n');
        else if (type === 'set') all += (await redis.smembers(k)).join('\n');
        else if (type === 'zset') all += (await redis.zrange(k, 0, -1)).join('\n');
        else if (type === 'stream') all += JSON.stringify(await redis.xrange(k, '-', '+'));
      }
    } finally {
      redis.disconnect();
    }
    for (const s of spellings) expect(all).not.toContain(s);

    const logs = processes.map((p) => p.logs()).join('\n');
    expect(logs).toContain('rotated on schedule');
    const answers = ApiClient.seen.join('\n');
    for (const s of spellings) {
      expect(logs).not.toContain(s);
      expect(answers).not.toContain(s);
    }
  });
});
