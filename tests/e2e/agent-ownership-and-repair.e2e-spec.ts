import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type * as k8s from '@kubernetes/client-node';
import { AgentProcess, type AgentFlags } from '../harness/agent-process.js';
import { eventually } from '../harness/eventually.js';
import { startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import { createNamespace, kubeConfig, uniqueName } from '../harness/test-env.js';

// A real agent process on the real kube-apiserver, against a real control plane, with a
// kubeconfig that may write Secrets anywhere (cluster admin): what it refuses to do is its own
// decision, not RBAC's. One owner per Kubernetes Secret; only the namespaces it serves; repair
// by comparing data after a restart; no drift lost while a sync is running.

describe('edge agent: ownership, served namespaces, and repair that does not depend on timing', () => {
  let cp: RunningControlPlane;
  let core: k8s.CoreV1Api;
  let dir: string;
  let caFile: string;
  let gate: string;
  let ns: string;
  let nsOut: string;
  let agentNs: string;
  const cluster = uniqueName('edge-own');
  const project = uniqueName('p');
  let agent: AgentProcess | undefined;
  const api = () => cp.admin;

  const readSecret = (namespace: string, name: string) => core.readNamespacedSecret({ namespace, name }).catch(() => undefined);
  const decoded = (s: k8s.V1Secret | undefined) =>
    s?.data ? Object.fromEntries(Object.entries(s.data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()])) : undefined;
  const publication = async (app: string) => (await api().get(`/projects/${project}/apps/${app}/publication`)).body;
  /** The agent's sigil_agent_secret_failures_total for one reason (0 before the first). */
  const secretFailures = async (reason: string) => {
    const text = await (await fetch(`${agent!.metricsUrl}/metrics`)).text();
    return Number(new RegExp(`^sigil_agent_secret_failures_total\\{reason="${reason}"\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
  };
  const valueIs = (name: string, want: Record<string, string>) => async () =>
    JSON.stringify(decoded(await readSecret(ns, name))) === JSON.stringify(want) ? true : undefined;
  const startAgent = (more: Partial<AgentFlags> = {}) =>
    AgentProcess.start(
      { controlPlane: cp.cp.grpcAddress, caFile, cluster, stateSecret: `${agentNs}/sigil-agent-state`, namespaces: [ns], ...more },
      { SIGIL_AGENT_TEST_SYNC_GATE: gate },
    );

  beforeAll(async () => {
    const k8sLib = await import('@kubernetes/client-node');
    core = (await kubeConfig()).makeApiClient(k8sLib.CoreV1Api);
    ns = await createNamespace('own');
    nsOut = await createNamespace('not-served');
    agentNs = await createNamespace('sigil-agent');
    cp = await startControlPlane();
    dir = await mkdtemp(path.join(tmpdir(), 'sigil-agent-own-'));
    caFile = path.join(dir, 'ca.pem');
    gate = path.join(dir, 'sync-gate');
    await writeFile(caFile, (await api().get('/agents/trust')).body.caCertificatePem);
    expect((await api().post('/projects', { name: project })).status).toBe(201);
    expect((await api().put(`/projects/${project}/cluster-selector`, { selector: {} })).status).toBe(204);
    // The project holds both namespaces at the centre; only the agent's --namespaces keeps nsOut out.
    expect((await api().put(`/projects/${project}/namespaces`, { namespaces: [ns, nsOut] })).status).toBe(200);
    await api().post(`/projects/${project}/apps`, { name: 'shop', namespace: ns, deliveryMode: 'env' });
    await api().post(`/projects/${project}/apps/shop/secrets`, { name: 'shop-db', data: { PASSWORD: 'own-v1-Hx3' } });
    await api().post(`/projects/${project}/apps/shop/secrets`, { name: 'shop-api', data: { TOKEN: 'api-v1-Hx3' } });
    expect((await api().post('/clusters', { name: cluster })).status).toBe(201);
    const token = (await api().post(`/clusters/${cluster}/enrollment-tokens`)).body.token as string;
    await writeFile(path.join(dir, 'token'), token, { mode: 0o600 });
    agent = await startAgent({ enrollmentTokenFile: path.join(dir, 'token') });
    await api().post(`/projects/${project}/apps/shop/publish`, { clusters: [cluster] });
    await eventually('shop-db delivered', valueIs('shop-db', { PASSWORD: 'own-v1-Hx3' }));
    await eventually('shop provisioned', async () => ((await publication('shop')).summary.provisioned === 1 ? true : undefined));
  });

  afterAll(async () => {
    await agent?.stop();
    await cp?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('leaves a Secret another Sigil source owns alone and reports Conflict', async () => {
    // As if another project had written it: managed by Sigil, but its source is not ours.
    const foreign = {
      metadata: {
        name: 'taken',
        labels: { 'app.kubernetes.io/managed-by': 'sigil', 'sigil.dev/app': 'other-app' },
        annotations: { 'sigil.dev/source': 'another-project-id/other-app/taken' },
      },
      stringData: { MINE: 'other-project-value' },
    };
    await core.createNamespacedSecret({ namespace: ns, body: foreign });
    await api().post(`/projects/${project}/apps/shop/secrets`, { name: 'taken', data: { MINE: 'shop-value' } });
    const view = await eventually('conflict reported', async () => {
      const v = await publication('shop');
      return v.summary.failed === 1 ? v : undefined;
    });
    expect(view.deliveries[0].reason).toBe(`Conflict: ${ns}/taken`);
    expect(await secretFailures('Conflict')).toBeGreaterThanOrEqual(1);
    const s = await readSecret(ns, 'taken');
    expect(decoded(s)).toEqual({ MINE: 'other-project-value' });
    expect(s?.metadata?.annotations?.['sigil.dev/source']).toBe('another-project-id/other-app/taken');
    expect(agent!.logs()).not.toContain('shop-value');
  });

  it('refuses a desired Secret outside the namespaces it serves, although its credentials could write there', async () => {
    await api().post(`/projects/${project}/apps`, { name: 'outside', namespace: nsOut, deliveryMode: 'env' });
    await api().post(`/projects/${project}/apps/outside/secrets`, { name: 'leak', data: { K: 'must-not-land' } });
    await api().post(`/projects/${project}/apps/outside/publish`, { clusters: [cluster] });
    const view = await eventually('refusal reported', async () => {
      const v = await publication('outside');
      return v.summary.failed === 1 ? v : undefined;
    });
    expect(view.deliveries[0].reason).toBe(`NamespaceNotServed: ${nsOut}/leak`);
    expect(await readSecret(nsOut, 'leak')).toBeUndefined();
    expect(await secretFailures('NamespaceNotServed')).toBeGreaterThanOrEqual(1);
  });

  it('after a restart, repairs a Secret whose data was edited while it was down (checksum annotation intact)', async () => {
    expect(await agent!.stop()).toBe(0);
    const s = (await readSecret(ns, 'shop-db'))!;
    await core.replaceNamespacedSecret({
      namespace: ns,
      name: 'shop-db',
      body: { ...s, data: { PASSWORD: Buffer.from('edited-while-down').toString('base64') } },
    });
    expect((await readSecret(ns, 'shop-db'))?.metadata?.annotations?.['sigil.dev/checksum']).toBe(
      s.metadata?.annotations?.['sigil.dev/checksum'],
    );
    agent = await startAgent();
    await eventually('restored after restart', valueIs('shop-db', { PASSWORD: 'own-v1-Hx3' }));
    expect(agent.logs()).toContain('using the stored enrollment');
  });

  it('repairs a Secret deleted or edited while a sync is running, within seconds, every time', async () => {
    for (let round = 2; round <= 4; round++) {
      const value = `own-v${round}-Hx3`;
      // Hold the sync of the rotation open after it has written and before it reports
      // (SIGIL_AGENT_TEST_SYNC_GATE): the deletion and the edit below land exactly in the window in
      // which events used to be dropped. The gate names the rotation's generation, so a sync of an
      // older state still running (the previous test's restart) is not the one held.
      const before = BigInt((await api().get(`/clusters/${cluster}`)).body.desiredGeneration as string);
      await writeFile(gate, String(before + 1n));
      try {
        await api().put(`/projects/${project}/apps/shop/secrets/shop-db`, { data: { PASSWORD: value } });
        await eventually(`round ${round}: rotation written`, valueIs('shop-db', { PASSWORD: value })).catch((e) => {
          console.log(agent!.logs().slice(-4000)); // eslint-disable-line no-console
          throw e;
        });
        await core.deleteNamespacedSecret({ namespace: ns, name: 'shop-db' });
        const api2 = (await readSecret(ns, 'shop-api'))!;
        await core.replaceNamespacedSecret({
          namespace: ns,
          name: 'shop-api',
          body: { ...api2, data: { TOKEN: Buffer.from('tampered-mid-sync').toString('base64') } },
        });
        await new Promise((r) => setTimeout(r, 300)); // the events reach the agent while it is still held
      } finally {
        await rm(gate, { force: true }); // a failed round must not hold every later sync of the file
      }
      expect(existsSync(gate)).toBe(false);
      await eventually(`round ${round}: deleted Secret restored`, valueIs('shop-db', { PASSWORD: value }), 5_000);
      await eventually(`round ${round}: edited Secret restored`, valueIs('shop-api', { TOKEN: 'api-v1-Hx3' }), 5_000);
    }
  });

  it('hands a Secret it wrote to the new owner when the old one left the desired state unseen', async () => {
    expect((await api().post(`/projects/${project}/apps`, { name: 'shop-next', namespace: ns, deliveryMode: 'env' })).status).toBe(201);
    expect((await api().post(`/projects/${project}/apps/shop-next/publish`, { clusters: [cluster] })).status).toBe(200);
    expect((await api().post(`/projects/${project}/apps/shop/secrets`, { name: 'handover', data: { K: 'from-shop' } })).status).toBe(201);
    await eventually('first owner delivered', valueIs('handover', { K: 'from-shop' }));
    // The agent is down while the Secret changes hands, so it never sees the state in between.
    expect(await agent!.stop()).toBe(0);
    expect((await api().delete(`/projects/${project}/apps/shop/secrets/handover`)).status).toBe(204);
    expect((await api().post(`/projects/${project}/apps/shop-next/secrets`, { name: 'handover', data: { K: 'from-next' } })).status).toBe(
      201,
    );
    agent = await startAgent();
    await eventually('new owner delivered', valueIs('handover', { K: 'from-next' }));
    expect((await readSecret(ns, 'handover'))?.metadata?.annotations?.['sigil.dev/source']).toMatch(/\/shop-next\/handover$/);
    // A Secret some other writer labelled as Sigil's (no record of this cluster) still is not taken.
    expect((await readSecret(ns, 'taken'))?.metadata?.annotations?.['sigil.dev/source']).toBe('another-project-id/other-app/taken');
  });

  it('moving a published app to another namespace is delivered: its Secrets leave the old one', async () => {
    expect((await api().post(`/projects/${project}/apps`, { name: 'mover', namespace: ns, deliveryMode: 'env' })).status).toBe(201);
    expect((await api().post(`/projects/${project}/apps/mover/secrets`, { name: 'mover-db', data: { K: 'm' } })).status).toBe(201);
    expect((await api().post(`/projects/${project}/apps/mover/publish`, { clusters: [cluster] })).status).toBe(200);
    await eventually('delivered before the move', valueIs('mover-db', { K: 'm' }));
    expect((await api().patch(`/projects/${project}/apps/mover`, { namespace: nsOut })).status).toBe(200);
    // This agent does not serve nsOut, so the move shows as the old Secret deleted and the new one refused.
    await eventually('gone from the old namespace', async () => ((await readSecret(ns, 'mover-db')) === undefined ? true : undefined));
    const view = await eventually('refusal in the new namespace reported', async () => {
      const v = await publication('mover');
      return v.deliveries[0]?.reason?.startsWith('NamespaceNotServed') ? v : undefined;
    });
    expect(view.deliveries[0].reason).toBe(`NamespaceNotServed: ${nsOut}/mover-db`);
  });
});
