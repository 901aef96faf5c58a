import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type * as k8s from '@kubernetes/client-node';
import pg from 'pg';
import { freeLoopbackPort } from '../../apps/control-plane/src/embedded/local-process.js';
import { AgentProcess } from '../harness/agent-process.js';
import { ApiClient } from '../harness/api-client.js';
import { eventually, holds } from '../harness/eventually.js';
import { createInjectionWebhook, injectablePod, injectorEnv, podToken, runInjector } from '../harness/injection.js';
import { startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import { spellings } from '../harness/secret-scan.js';
import { TargetDatabase } from '../harness/target-database.js';
import { createNamespace, kubeConfig, uniqueName } from '../harness/test-env.js';

// Dynamic secrets in an app with delivery mode inject, for real: a control-plane process
// issuing a credential through a registered connection to a separate target database, a real
// agent process serving its webhook and injection port, the harness' kube-apiserver calling
// the webhook, and the real injector (init, then sidecar) with a pod-bound TokenRequest token.
// The credential reaches the pod's files and, through sigil-exec, its environment, and logs in;
// a renewal reaches the sidecar's files, and the old role is dropped after the grace period.
// No Kubernetes Secret is written.

const SWEEP = { SIGIL_LEASE_SWEEP_INTERVAL_MS: '200', SIGIL_LEASE_MIN_TTL_S: '5' };
// Renewal 20 s after each issue; the old credential works for 3 s after the cluster applied the new one.
const TTL = { ttlSeconds: 60, renewBeforeSeconds: 40, graceSeconds: 3 };

describe('dynamic secrets through injection', () => {
  let cp: RunningControlPlane;
  let core: k8s.CoreV1Api;
  let admission: k8s.AdmissionregistrationV1Api;
  let target: TargetDatabase;
  let agent: AgentProcess | undefined;
  let dir: string;
  const project = uniqueName('di');
  const ns = uniqueName('dinj').slice(0, 40);
  const cluster = uniqueName('edge');
  const webhook = uniqueName('sigil-inject');
  const api = () => cp.admin;
  const delivered = new Set<string>();
  const injectorLogs: string[] = [];

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
  const files = async (root: string) => {
    const d = path.join(root, 'files', 'orders-db');
    const read = (k: string) => readFile(path.join(d, k), 'utf8');
    const f = { username: await read('username'), password: await read('password'), DATABASE_URL: await read('DATABASE_URL') };
    delivered.add(f.password);
    return f;
  };
  const leases = async (q = '') =>
    (await api().get(`/projects/${project}/apps/pay/leases${q}`)).body.items as Array<Record<string, unknown>>;

  beforeAll(async () => {
    const k8sLib = await import('@kubernetes/client-node');
    const kc = await kubeConfig();
    core = kc.makeApiClient(k8sLib.CoreV1Api);
    admission = kc.makeApiClient(k8sLib.AdmissionregistrationV1Api);
    await core.createNamespace({ body: { metadata: { name: ns } } });
    await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'pay' } } });
    const agentNs = await createNamespace('sigil-agent');
    target = await TargetDatabase.create();
    cp = await startControlPlane(SWEEP);
    expect((await api().post('/projects', { name: project })).status).toBe(201);
    expect((await api().put(`/projects/${project}/cluster-selector`, { selector: {} })).status).toBe(204);
    expect((await api().put(`/projects/${project}/namespaces`, { namespaces: [ns] })).status).toBe(200);
    expect(
      (
        await api().post(`/projects/${project}/apps`, {
          name: 'pay',
          namespace: ns,
          deliveryMode: 'inject',
          consumers: [{ namespace: ns, serviceAccount: 'pay' }],
        })
      ).status,
    ).toBe(201);
    expect((await api().post(`/projects/${project}/connections`, target.connectionRequest('orders-db'))).status).toBe(201);
    const created = await api().post(`/projects/${project}/apps/pay/secrets`, {
      name: 'orders-db',
      dynamic: {
        connection: 'orders-db',
        creationStatements: [
          'CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}',
          'GRANT SELECT ON orders TO {{name}}',
        ],
        ...TTL,
        keys: {
          username: '{{username}}',
          password: '{{password}}',
          DATABASE_URL: 'postgresql://{{username}}:{{password}}@{{host}}:{{port}}/{{database}}?sslmode={{sslmode}}',
        },
      },
    });
    expect(created.status).toBe(201);

    dir = await mkdtemp(path.join(tmpdir(), 'sigil-dyn-inject-'));
    await writeFile(path.join(dir, 'ca.pem'), (await api().get('/agents/trust')).body.caCertificatePem);
    expect((await api().post('/clusters', { name: cluster, labels: {} })).status).toBe(201);
    await writeFile(path.join(dir, 'token'), (await api().post(`/clusters/${cluster}/enrollment-tokens`)).body.token, { mode: 0o600 });
    const injectPort = await freeLoopbackPort();
    await createInjectionWebhook(admission, webhook, injectPort, [ns]);
    agent = await AgentProcess.start({
      controlPlane: cp.cp.grpcAddress,
      caFile: path.join(dir, 'ca.pem'),
      cluster,
      stateSecret: `${agentNs}/sigil-agent-state`,
      enrollmentTokenFile: path.join(dir, 'token'),
      inject: true,
      injectHost: '127.0.0.1',
      injectPort,
      injectUrl: `https://127.0.0.1:${injectPort}`,
      injectNames: ['127.0.0.1'],
      injectWebhook: webhook,
      injectImage: 'sigil-agent:dev',
    });
    await eventually('agent ready', async () => holds((await fetch(`${agent!.metricsUrl}/readyz`)).ok), 30_000);
    await eventually('enrolled', async () => holds((await api().get(`/clusters/${cluster}`)).body.state === 'enrolled'), 30_000);
    // The webhook's caBundle is the agent's authority once it has patched it.
    await eventually('caBundle set', async () =>
      holds(Boolean((await admission.readMutatingWebhookConfiguration({ name: webhook })).webhooks?.[0]?.clientConfig.caBundle)),
    );
  }, 120_000);

  afterAll(async () => {
    await admission?.deleteMutatingWebhookConfiguration({ name: webhook }).catch(() => undefined);
    await agent?.stop();
    await cp?.stop();
    await target?.drop();
  });

  it('published: the cluster gets its own credential, and the app is provisioned without any Kubernetes Secret', async () => {
    expect((await api().post(`/projects/${project}/apps/pay/publish`, { clusters: [cluster] })).status).toBe(200);
    await eventually(
      'provisioned',
      async () => holds((await api().get(`/projects/${project}/apps/pay/publication`)).body.summary?.provisioned === 1),
      30_000,
    );
    const active = await leases('?state=active');
    expect(active.map((l) => [l.cluster, l.serial, l.secret])).toEqual([[cluster, 1, 'orders-db']]);
    expect((await core.listNamespacedSecret({ namespace: ns })).items).toEqual([]);
  });

  it('init + sigil-exec: the pod receives the credential as files and environment, and it logs in to the target database', async () => {
    const pod = await core.createNamespacedPod({
      namespace: ns,
      body: injectablePod(uniqueName('init'), 'pay', { 'sigil.dev/inject': 'pay', 'sigil.dev/inject-env': 'true' }, [
        '/bin/sh',
        '-c',
        'echo "$DATABASE_URL"',
      ]),
    });
    expect(pod.metadata!.annotations?.['sigil.dev/injected']).toBe('pay');
    expect(pod.spec!.containers[0]!.command![0]).toBe('/sigil/bin/sigil-exec');
    const root = await mkdtemp(path.join(dir, 'pod-'));
    const run = await runInjector('init', await injectorEnv(pod, 'sigil-inject-init', await podToken(core, pod), root)).done;
    injectorLogs.push(run.stderr);
    expect(run).toMatchObject({ code: 0 });
    const f = await files(root);
    const [lease] = await leases('?state=active');
    expect(f.username).toBe(lease!.role);
    expect(f.DATABASE_URL).toBe(
      `postgresql://${f.username}:${f.password}@${target.host}:${target.port}/${target.database}?sslmode=disable`,
    );
    expect(await login(f.DATABASE_URL)).toEqual([{ item: 'book' }]);
    // The app container's command, as the webhook rewrote it: sigil-exec puts the values in its environment.
    const [wrapper, ...command] = pod.spec!.containers[0]!.command!;
    expect(wrapper).toBe('/sigil/bin/sigil-exec');
    const env = await new Promise<string>((resolve) => {
      let out = '';
      const c = spawn(path.join(root, 'bin', 'sigil-exec'), command, {
        env: { PATH: '/usr/bin:/bin', SIGIL_EXEC_ENV_FILE: path.join(root, 'env', 'env') },
      });
      c.stdout.on('data', (b: Buffer) => (out += b.toString()));
      c.once('exit', () => resolve(out.trim()));
    });
    expect(env).toBe(f.DATABASE_URL);
    // The pod object the API server stored holds no value.
    const stored = await core.readNamespacedPod({ namespace: ns, name: pod.metadata!.name! });
    expect(JSON.stringify(stored)).not.toContain(f.password);
  });

  it('sidecar: a renewal reaches the files, the new credential logs in, and the old role is dropped after the grace period', async () => {
    const pod = await core.createNamespacedPod({
      namespace: ns,
      body: injectablePod(uniqueName('side'), 'pay', { 'sigil.dev/inject': 'pay', 'sigil.dev/inject-mode': 'sidecar' }),
    });
    const root = await mkdtemp(path.join(dir, 'side-'));
    const token = await podToken(core, pod);
    const init = await runInjector('init', await injectorEnv(pod, 'sigil-inject-init', token, root)).done;
    injectorLogs.push(init.stderr);
    expect(init.code).toBe(0);
    const before = await files(root);
    const sidecar = runInjector('sidecar', await injectorEnv(pod, 'sigil-inject-sidecar', token, root));
    try {
      const after = await eventually(
        'the renewed credential in the files',
        async () => {
          const f = await files(root);
          return f.username !== before.username ? f : undefined;
        },
        40_000,
        250,
      );
      expect(await login(after.DATABASE_URL)).toEqual([{ item: 'book' }]);
      const old = await eventually(
        'the old lease revoked once applied + grace',
        async () => {
          const l = (await leases()).find((x) => x.role === before.username);
          return l?.state === 'revoked' ? l : undefined;
        },
        20_000,
        250,
      );
      expect(old).toMatchObject({ revokeReason: 'superseded', serial: 1, cluster });
      await expect(login(before.DATABASE_URL)).rejects.toThrow();
      expect(await target.roles()).toEqual([after.username]);
      // The grants reach the centre with the cluster's version of the secret: the lease's serial.
      await eventually(
        'a grant of the renewed version',
        async () => {
          const items = (await api().get(`/projects/${project}/apps/pay/consumption`)).body.items as Array<Record<string, unknown>>;
          return holds(items.some((i) => i.secret === 'orders-db' && i.version === 2 && i.serviceAccount === 'pay'));
        },
        20_000,
      );

      // Unpublished: the sidecar removes the files, and the role is dropped.
      expect((await api().post(`/projects/${project}/apps/pay/unpublish`, { clusters: [cluster] })).status).toBe(200);
      await eventually('files removed', () => holds(readdirSync(path.join(root, 'files')).length === 0), 20_000);
      await eventually('no role left', async () => holds((await target.roles()).length === 0), 20_000);
    } finally {
      sidecar.kill();
      injectorLogs.push(sidecar.stderr());
    }
  }, 120_000);

  it('no delivered password is in the control plane’s or the agent’s log, the injectors’ output, any API answer or a Secret', async () => {
    expect(delivered.size).toBeGreaterThanOrEqual(2);
    const needles = [...delivered].flatMap(spellings);
    const logs = `${cp.cp.logs()}\n${agent!.logs()}\n${injectorLogs.join('\n')}`;
    expect(logs).toContain(cluster); // the scan sees the logs
    const answers = ApiClient.seen.join('\n');
    const secrets = JSON.stringify((await core.listSecretForAllNamespaces()).items);
    for (const n of needles) {
      expect(logs).not.toContain(n);
      expect(answers).not.toContain(n);
      expect(secrets).not.toContain(n);
    }
  });
});
