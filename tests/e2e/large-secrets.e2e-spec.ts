import { randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type * as k8s from '@kubernetes/client-node';
import pg from 'pg';
import { AgentProcess } from '../harness/agent-process.js';
import { eventually } from '../harness/eventually.js';
import { startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import { createNamespace, kubeConfig, uniqueName } from '../harness/test-env.js';

// Secrets at the Kubernetes size limit, end to end: REST → control plane → real agent process
// → real kube-apiserver. Before paging, three 1 MiB secrets made the agent's GetDesiredState
// fail with RESOURCE_EXHAUSTED (4 MiB default receive limit) for the whole cluster, forever.
// Also: what is over the limits is refused at the API with a code, and nothing is written.

const MiB = 1024 * 1024;

describe('secrets at the size limit', () => {
  let cp: RunningControlPlane;
  let core: k8s.CoreV1Api;
  let agent: AgentProcess | undefined;
  let ns: string;
  const cluster = uniqueName('big');
  const project = uniqueName('p');
  const api = () => cp.admin;
  // Exactly 1 MiB of key + value: the most Kubernetes stores in one Secret.
  const blobs = [randomBytes(MiB - 4), randomBytes(MiB - 4)];
  const text = 'x'.repeat(MiB - 4);

  async function rowCounts(): Promise<Record<string, string>> {
    const c = new pg.Client({ connectionString: cp.databaseUrl });
    await c.connect();
    try {
      const r = await c.query<{ t: string; n: string }>(
        `SELECT 'secrets' t, count(*)::text n FROM secrets UNION ALL SELECT 'versions', count(*)::text FROM secret_versions
         UNION ALL SELECT 'sealed', count(*)::text FROM sealed_values`,
      );
      return Object.fromEntries(r.rows.map((x) => [x.t, x.n]));
    } finally {
      await c.end();
    }
  }

  beforeAll(async () => {
    const k8sLib = await import('@kubernetes/client-node');
    core = (await kubeConfig()).makeApiClient(k8sLib.CoreV1Api);
    ns = await createNamespace('big');
    const agentNs = await createNamespace('sigil-agent');
    cp = await startControlPlane();
    const dir = await mkdtemp(path.join(tmpdir(), 'sigil-agent-'));
    await writeFile(path.join(dir, 'ca.pem'), (await api().get('/agents/trust')).body.caCertificatePem);
    expect((await api().post('/projects', { name: project })).status).toBe(201);
    expect((await api().put(`/projects/${project}/cluster-selector`, { selector: {} })).status).toBe(204);
    expect((await api().put(`/projects/${project}/namespaces`, { namespaces: [ns] })).status).toBe(200);
    expect((await api().post(`/projects/${project}/apps`, { name: 'blobs', namespace: ns, deliveryMode: 'volume' })).status).toBe(201);
    expect((await api().post('/clusters', { name: cluster, labels: {} })).status).toBe(201);
    await writeFile(path.join(dir, 'token'), (await api().post(`/clusters/${cluster}/enrollment-tokens`)).body.token as string, {
      mode: 0o600,
    });
    agent = await AgentProcess.start({
      controlPlane: cp.cp.grpcAddress,
      caFile: path.join(dir, 'ca.pem'),
      cluster,
      stateSecret: `${agentNs}/sigil-agent-state`,
      namespaces: [ns],
      enrollmentTokenFile: path.join(dir, 'token'),
    });
  }, 120_000);

  afterAll(async () => {
    await agent?.stop();
    await cp?.stop();
  });

  it('delivers three 1 MiB secrets to one cluster: every one is written to Kubernetes intact', async () => {
    for (const [i, blob] of blobs.entries()) {
      const r = await api().post(`/projects/${project}/apps/blobs/secrets`, {
        name: `blob-${i}`,
        binaryData: { blob: blob.toString('base64') },
      });
      expect(r.status).toBe(201);
    }
    // The same size as text: fits the request body limit too.
    expect((await api().post(`/projects/${project}/apps/blobs/secrets`, { name: 'text', data: { text } })).status).toBe(201);
    expect((await api().post(`/projects/${project}/apps/blobs/publish`, { clusters: [cluster] })).status).toBeLessThan(300);

    const read = (name: string) => core.readNamespacedSecret({ namespace: ns, name }).catch(() => undefined);
    for (const [i, blob] of blobs.entries()) {
      const s = await eventually(`blob-${i} in Kubernetes`, () => read(`blob-${i}`), 45_000).catch((err: Error) => {
        // Say why: before paging, the agent's log showed "sync failed" with code 8 (RESOURCE_EXHAUSTED).
        const failed = agent!
          .logs()
          .split('\n')
          .filter((l) => l.includes('sync failed'));
        throw new Error(`${err.message}; last agent sync failure: ${failed.at(-1) ?? 'none'}`);
      });
      expect(Buffer.from(s.data!.blob!, 'base64').equals(blob)).toBe(true);
    }
    const t = await eventually('text in Kubernetes', () => read('text'), 15_000);
    expect(Buffer.from(t.data!.text!, 'base64').toString()).toBe(text);
    await eventually(
      'provisioned',
      async () => ((await api().get(`/projects/${project}/apps/blobs/publication`)).body.summary.provisioned === 1 ? true : undefined),
      15_000,
    );
    expect(agent!.logs()).not.toContain('RESOURCE_EXHAUSTED');
  }, 90_000);

  it('refuses a secret over 1 MiB of data with 413 secret_too_large, writing nothing', async () => {
    const before = await rowCounts();
    const r = await api().post(`/projects/${project}/apps/blobs/secrets`, {
      name: 'too-big',
      binaryData: { blob: randomBytes(MiB - 3).toString('base64') },
    });
    expect(r.status).toBe(413);
    expect(r.headers.get('content-type')).toContain('application/problem+json');
    expect(r.body).toMatchObject({ status: 413, code: 'secret_too_large' });
    expect(await rowCounts()).toEqual(before);
  });

  it('refuses a secret whose encoded payload would not fit one delivery page (many tiny keys), writing nothing', async () => {
    // 900,000 bytes of keys and values (legal for Kubernetes) encode to about 1.7 MB sealed.
    const data = Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [`k${String(i).padStart(7, '0')}`, 'x']));
    const before = await rowCounts();
    const create = await api().post(`/projects/${project}/apps/blobs/secrets`, { name: 'many-keys', data });
    expect(create.status).toBe(413);
    expect(create.body).toMatchObject({ code: 'secret_too_large' });
    expect(create.body.detail).toContain('encoded payload');
    const update = await api().put(`/projects/${project}/apps/blobs/secrets/blob-0`, { data });
    expect(update.status).toBe(413);
    expect(update.body).toMatchObject({ code: 'secret_too_large' });
    expect(await rowCounts()).toEqual(before);
  }, 30_000);

  it('answers a body over the request limit with a clean 413 problem, writing nothing', async () => {
    const before = await rowCounts();
    const r = await api().post(`/projects/${project}/apps/blobs/secrets`, { name: 'huge', data: { v: 'x'.repeat(2 * MiB) } });
    expect(r.status).toBe(413);
    expect(r.headers.get('content-type')).toContain('application/problem+json');
    expect(r.body).toMatchObject({ status: 413, code: 'payload_too_large' });
    expect(r.body.detail).toContain('binaryData');
    expect(await rowCounts()).toEqual(before);
  });
});
