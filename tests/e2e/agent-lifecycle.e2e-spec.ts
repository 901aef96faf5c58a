import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type * as k8s from '@kubernetes/client-node';
import { AgentProcess, type AgentFlags } from '../harness/agent-process.js';
import { eventually } from '../harness/eventually.js';
import { startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import { createNamespace, kubeConfig, mintServiceAccountToken, testEnv, uniqueName } from '../harness/test-env.js';

// The whole lifecycle with a real agent process on a real kube-apiserver, against a real
// control-plane process: enroll → publish → Secrets appear → rotate → roll back → drift repair
// → conflict → restarts → unpublish → Secrets gone; the control plane's status at each step.

describe('edge agent lifecycle', () => {
  let cp: RunningControlPlane;
  let core: k8s.CoreV1Api;
  let dir: string;
  let caFile: string;
  const nsEnv = uniqueName('shop').slice(0, 40);
  const nsVol = uniqueName('reports').slice(0, 40);
  let agentNs: string;
  const cluster = uniqueName('edge');
  let agent: AgentProcess | undefined;
  const project = uniqueName('p');
  const api = () => cp.admin;

  const readSecret = (ns: string, name: string) => core.readNamespacedSecret({ namespace: ns, name }).catch(() => undefined);
  const decoded = (s: k8s.V1Secret | undefined) =>
    s?.data ? Object.fromEntries(Object.entries(s.data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()])) : undefined;
  const status = async (app: string) => (await api().get(`/projects/${project}/apps/${app}/publication`)).body;
  const agentFlags = (more: Partial<AgentFlags> = {}): AgentFlags => ({
    controlPlane: cp.cp.grpcAddress,
    caFile,
    cluster,
    stateSecret: `${agentNs}/sigil-agent-state`,
    namespaces: [nsEnv, nsVol],
    ...more,
  });

  beforeAll(async () => {
    const k8sLib = await import('@kubernetes/client-node');
    core = (await kubeConfig()).makeApiClient(k8sLib.CoreV1Api);
    for (const ns of [nsEnv, nsVol]) await core.createNamespace({ body: { metadata: { name: ns } } });
    agentNs = await createNamespace('sigil-agent');
    cp = await startControlPlane();
    dir = await mkdtemp(path.join(tmpdir(), 'sigil-agent-'));
    caFile = path.join(dir, 'ca.pem');
    await writeFile(caFile, (await api().get('/agents/trust')).body.caCertificatePem);

    expect((await api().post('/projects', { name: project })).status).toBe(201);
    expect((await api().put(`/projects/${project}/cluster-selector`, { selector: {} })).status).toBe(204);
    expect((await api().put(`/projects/${project}/namespaces`, { namespaces: [nsEnv, nsVol] })).status).toBe(200);
    await api().post(`/projects/${project}/apps`, { name: 'checkout', namespace: nsEnv, deliveryMode: 'env' });
    await api().post(`/projects/${project}/apps`, { name: 'reports', namespace: nsVol, deliveryMode: 'volume' });
    await api().post(`/projects/${project}/apps/checkout/secrets`, { name: 'checkout-db', data: { PASSWORD: 'canary-v1-Zq8' } });
    await api().post(`/projects/${project}/apps/reports/secrets`, {
      name: 'reports-config',
      binaryData: { 'key.bin': Buffer.from([0, 1, 2, 255]).toString('base64') },
    });
    expect((await api().post('/clusters', { name: cluster, labels: { tier: 'store' } })).status).toBe(201);
    const token = (await api().post(`/clusters/${cluster}/enrollment-tokens`)).body.token as string;
    await writeFile(path.join(dir, 'token'), token, { mode: 0o600 });
  });

  afterAll(async () => {
    await agent?.stop();
    await cp?.stop();
  });

  it('enrolls with its bootstrap token and keeps its identity in a Secret of its namespace', async () => {
    agent = await AgentProcess.start(agentFlags({ enrollmentTokenFile: path.join(dir, 'token') }));
    await eventually('cluster enrolled', async () =>
      (await api().get(`/clusters/${cluster}`)).body.state === 'enrolled' ? true : undefined,
    );
    const state = await eventually('state secret', () => readSecret(agentNs, 'sigil-agent-state'));
    expect(Object.keys(state.data ?? {}).sort()).toEqual(['certificatePem', 'cluster', 'clusterId', 'deliveryPrivateKeyPem', 'tlsKeyPem']);
    await eventually('agent ready', async () => ((await fetch(`${agent!.metricsUrl}/readyz`)).ok ? true : undefined));
  });

  it('publish: Secrets appear with the right data, type, labels and annotations (env app and volume app)', async () => {
    await api().post(`/projects/${project}/apps/checkout/publish`, { clusters: [cluster] });
    await api().post(`/projects/${project}/apps/reports/publish`, { selector: { matchLabels: { tier: 'store' } } });
    const db = await eventually('checkout-db', () => readSecret(nsEnv, 'checkout-db'));
    expect(decoded(db)).toEqual({ PASSWORD: 'canary-v1-Zq8' });
    expect(db.type).toBe('Opaque');
    expect(db.metadata?.labels).toMatchObject({ 'app.kubernetes.io/managed-by': 'sigil', 'sigil.dev/app': 'checkout' });
    expect(db.metadata?.annotations).toMatchObject({ 'sigil.dev/version': '1' });
    expect(db.metadata?.annotations?.['sigil.dev/checksum']).toMatch(/^[0-9a-f]{64}$/);
    const rep = await eventually('reports-config', () => readSecret(nsVol, 'reports-config'));
    expect(Buffer.from(rep.data!['key.bin']!, 'base64')).toEqual(Buffer.from([0, 1, 2, 255]));
    for (const app of ['checkout', 'reports']) {
      await eventually(`${app} provisioned`, async () => ((await status(app)).summary.provisioned === 1 ? true : undefined));
    }
  });

  it('rotate changes the data; roll back brings it back', async () => {
    await api().put(`/projects/${project}/apps/checkout/secrets/checkout-db`, { data: { PASSWORD: 'canary-v2-Zq8' } });
    await eventually('rotated', async () =>
      decoded(await readSecret(nsEnv, 'checkout-db'))?.PASSWORD === 'canary-v2-Zq8' ? true : undefined,
    );
    await api().post(`/projects/${project}/apps/checkout/secrets/checkout-db/rollback`, { version: 1 });
    const back = await eventually('rolled back', async () => {
      const s = await readSecret(nsEnv, 'checkout-db');
      return decoded(s)?.PASSWORD === 'canary-v1-Zq8' ? s : undefined;
    });
    expect(back.metadata?.annotations?.['sigil.dev/version']).toBe('1');
    await eventually('provisioned', async () => ((await status('checkout')).summary.provisioned === 1 ? true : undefined));
  });

  it('repairs a Secret deleted or edited by hand within seconds', async () => {
    await core.deleteNamespacedSecret({ namespace: nsEnv, name: 'checkout-db' });
    let started = Date.now();
    await eventually(
      'restored after delete',
      async () => (decoded(await readSecret(nsEnv, 'checkout-db'))?.PASSWORD === 'canary-v1-Zq8' ? true : undefined),
      5_000,
    );
    process.stderr.write(`[agent-lifecycle] deleted Secret restored in ${Date.now() - started} ms\n`);
    const s = (await readSecret(nsEnv, 'checkout-db'))!;
    await core.replaceNamespacedSecret({
      namespace: nsEnv,
      name: 'checkout-db',
      body: { ...s, data: { PASSWORD: Buffer.from('tampered').toString('base64') } },
    });
    started = Date.now();
    await eventually(
      'restored after edit',
      async () => (decoded(await readSecret(nsEnv, 'checkout-db'))?.PASSWORD === 'canary-v1-Zq8' ? true : undefined),
      5_000,
    );
    process.stderr.write(`[agent-lifecycle] edited Secret restored in ${Date.now() - started} ms\n`);
  });

  it('leaves an unmanaged Secret with the same name alone and reports the conflict', async () => {
    await core.createNamespacedSecret({ namespace: nsEnv, body: { metadata: { name: 'legacy' }, stringData: { MINE: 'keep-me' } } });
    await api().post(`/projects/${project}/apps/checkout/secrets`, { name: 'legacy', data: { MINE: 'sigil' } });
    const view = await eventually('conflict reported', async () => {
      const v = await status('checkout');
      return v.summary.failed === 1 ? v : undefined;
    });
    expect(view.deliveries[0].reason).toBe(`Conflict: ${nsEnv}/legacy`);
    expect(decoded(await readSecret(nsEnv, 'legacy'))).toEqual({ MINE: 'keep-me' });
    await api().delete(`/projects/${project}/apps/checkout/secrets/legacy`);
    await eventually('provisioned again', async () => ((await status('checkout')).summary.provisioned === 1 ? true : undefined));
    expect(decoded(await readSecret(nsEnv, 'legacy'))).toEqual({ MINE: 'keep-me' });
  });

  it('an agent restarted mid-flight keeps its identity and converges: nothing missing, nothing stale', async () => {
    expect(await agent!.stop()).toBe(0);
    await api().put(`/projects/${project}/apps/checkout/secrets/checkout-db`, { data: { PASSWORD: 'canary-v3-Zq8' } });
    // No token this time: it was used; the identity in the state Secret must do.
    agent = await AgentProcess.start(agentFlags({ restartWorkloads: true }));
    await eventually('v3 after restart', async () =>
      decoded(await readSecret(nsEnv, 'checkout-db'))?.PASSWORD === 'canary-v3-Zq8' ? true : undefined,
    );
    await eventually('provisioned', async () => ((await status('checkout')).summary.provisioned === 1 ? true : undefined));
    expect(agent.logs()).toContain('using the stored enrollment');
  });

  it('a control plane killed and restarted mid-flight: the agent reconnects and converges', async () => {
    const url = new URL(cp.cp.url);
    const grpcPort = cp.cp.grpcAddress.split(':')[1]!;
    await cp.cp.stop('SIGKILL');
    // While it is down, nothing changes for the agent; then the same ports come back.
    const back = await cp.startReplica({ SIGIL_HTTP_PORT: url.port, SIGIL_GRPC_PORT: grpcPort });
    cp.cp = back.cp;
    await api().put(`/projects/${project}/apps/checkout/secrets/checkout-db`, { data: { PASSWORD: 'canary-v4-Zq8' } });
    await eventually(
      'v4 after the control plane restart',
      async () => (decoded(await readSecret(nsEnv, 'checkout-db'))?.PASSWORD === 'canary-v4-Zq8' ? true : undefined),
      30_000,
    );
    await eventually('provisioned', async () => ((await status('checkout')).summary.provisioned === 1 ? true : undefined));
    const list = await core.listNamespacedSecret({ namespace: nsEnv, labelSelector: 'app.kubernetes.io/managed-by=sigil' });
    expect(list.items.map((i) => i.metadata?.name)).toEqual(['checkout-db']); // no duplicates, nothing stale
  });

  it('restarts opted-in workloads that use a changed Secret, at most once per interval', async () => {
    const k8sLib = await import('@kubernetes/client-node');
    const appsApi = (await kubeConfig()).makeApiClient(k8sLib.AppsV1Api);
    const deployment = (name: string, optIn: boolean): k8s.V1Deployment => ({
      metadata: { name, ...(optIn ? { annotations: { 'sigil.dev/restart-on-change': 'true' } } : {}) },
      spec: {
        selector: { matchLabels: { app: name } },
        template: {
          metadata: { labels: { app: name } },
          spec: { containers: [{ name: 'app', image: 'example/app:1', envFrom: [{ secretRef: { name: 'checkout-db' } }] }] },
        },
      },
    });
    await appsApi.createNamespacedDeployment({ namespace: nsEnv, body: deployment('web', true) });
    await appsApi.createNamespacedDeployment({ namespace: nsEnv, body: deployment('batch', false) });
    const restartedAt = async (name: string) =>
      (await appsApi.readNamespacedDeployment({ namespace: nsEnv, name })).spec?.template?.metadata?.annotations?.[
        'sigil.dev/restarted-at'
      ];

    await api().put(`/projects/${project}/apps/checkout/secrets/checkout-db`, { data: { PASSWORD: 'canary-v5-Zq8' } });
    const first = await eventually('web restarted', () => restartedAt('web'));
    expect(await restartedAt('batch')).toBeUndefined();
    await api().put(`/projects/${project}/apps/checkout/secrets/checkout-db`, { data: { PASSWORD: 'canary-v6-Zq8' } });
    await eventually('v6 applied', async () =>
      decoded(await readSecret(nsEnv, 'checkout-db'))?.PASSWORD === 'canary-v6-Zq8' ? true : undefined,
    );
    // The agent restarts after applying a state and before the next one: once v7 is applied, v6's
    // restart (if it made one) was written.
    await api().put(`/projects/${project}/apps/checkout/secrets/checkout-db`, { data: { PASSWORD: 'canary-v7-Zq8' } });
    await eventually('v7 applied', async () =>
      decoded(await readSecret(nsEnv, 'checkout-db'))?.PASSWORD === 'canary-v7-Zq8' ? true : undefined,
    );
    expect(await restartedAt('web')).toBe(first); // rate-limited: one restart per minute
  });

  it('stays small and quiet while idle, and never logs a value', async () => {
    await new Promise((r) => setTimeout(r, 2_000));
    const ticks = agent!.cpuTicks();
    await new Promise((r) => setTimeout(r, 3_000));
    const idleTicks = agent!.cpuTicks() - ticks;
    const rss = agent!.rssMiB();
    const metrics = await (await fetch(`${agent!.metricsUrl}/metrics`)).text();
    const mib = (name: string) =>
      (Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(metrics)?.[1] ?? NaN) / 1048576).toFixed(1);
    process.stderr.write(
      `[agent-lifecycle] idle agent: RSS ${rss.toFixed(1)} MiB (V8 heap ${mib('nodejs_heap_size_total_bytes')} MiB, ` +
        `used ${mib('nodejs_heap_size_used_bytes')} MiB, external ${mib('nodejs_external_memory_bytes')} MiB), ${idleTicks} CPU ticks in 3 s\n`,
    );
    // The brief's target: under 60 MB. Measured 56–58.7 MiB; docs/decisions/007 has the profile.
    expect(rss).toBeLessThan(60);
    expect(idleTicks).toBeLessThanOrEqual(5); // 5 ticks = 50 ms of CPU in 3 s
    for (const v of ['canary-v1-Zq8', 'canary-v2-Zq8', 'canary-v3-Zq8', 'canary-v4-Zq8', 'canary-v5-Zq8', 'canary-v6-Zq8', 'canary-v7-Zq8'])
      expect(agent!.logs()).not.toContain(v);
  });

  it('unpublish: the Secrets are deleted and the control plane records them deprovisioned', async () => {
    await api().post(`/projects/${project}/apps/checkout/unpublish`, {});
    await api().post(`/projects/${project}/apps/reports/unpublish`, {});
    await eventually('secrets gone', async () =>
      !(await readSecret(nsEnv, 'checkout-db')) && !(await readSecret(nsVol, 'reports-config')) ? true : undefined,
    );
    for (const app of ['checkout', 'reports']) {
      await eventually(`${app} deprovisioned`, async () =>
        (await status(app)).deliveries[0]?.state === 'deprovisioned' ? true : undefined,
      );
    }
    expect(decoded(await readSecret(nsEnv, 'legacy'))).toEqual({ MINE: 'keep-me' });
  });

  it('enrolls by Kubernetes service-account identity (no shared secret) and delivers', async () => {
    const k8sLib = await import('@kubernetes/client-node');
    const rbac = (await kubeConfig()).makeApiClient(k8sLib.RbacAuthorizationV1Api);
    await rbac
      .createClusterRoleBinding({
        body: {
          metadata: { name: 'sigil-test-issuer-discovery' },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:service-account-issuer-discovery' },
          subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'system:unauthenticated' }],
        },
      })
      .catch((err: { code?: number }) => {
        if (err.code !== 409) throw err;
      });
    const kube = testEnv().kube;
    const nsSa = await createNamespace('sa-app');
    const saCluster = uniqueName('edge-sa');
    const reg = await api().post('/clusters', {
      name: saCluster,
      kubernetesIdentity: {
        issuer: kube.issuer,
        jwksUri: `${kube.server}/openid/v1/jwks`,
        caCert: readFileSync(kube.caFile, 'utf8'),
        serviceAccount: { namespace: agentNs, name: 'sigil-agent' },
        allowPrivateAddresses: true, // the test API server listens on 127.0.0.1
      },
    });
    expect(reg.status).toBe(201);
    const tokenFile = path.join(dir, 'sa-token');
    await writeFile(tokenFile, await mintServiceAccountToken(agentNs, 'sigil-agent', ['sigil']), { mode: 0o600 });
    expect((await api().put(`/projects/${project}/namespaces`, { namespaces: [nsEnv, nsVol, nsSa] })).status).toBe(200);
    await api().post(`/projects/${project}/apps`, { name: 'sa-app', namespace: nsSa, deliveryMode: 'env' });
    await api().post(`/projects/${project}/apps/sa-app/secrets`, { name: 'sa-secret', data: { K: 'from-identity' } });
    await api().post(`/projects/${project}/apps/sa-app/publish`, { clusters: [saCluster] });
    const saAgent = await AgentProcess.start(
      agentFlags({
        cluster: saCluster,
        stateSecret: undefined,
        stateDir: path.join(dir, 'sa-state'),
        namespaces: [nsSa],
        serviceAccountTokenFile: tokenFile,
      }),
    );
    try {
      const s = await eventually('secret from the identity-enrolled agent', () => readSecret(nsSa, 'sa-secret'));
      expect(decoded(s)).toEqual({ K: 'from-identity' });
      expect((await api().get(`/clusters/${saCluster}`)).body.state).toBe('enrolled');
    } finally {
      expect(await saAgent.stop()).toBe(0);
    }
  });
});
