import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AgentProcess } from '../../tests/harness/agent-process.js';
import type { ApiResponse } from '../../tests/harness/api-client.js';
import { eventually, holds } from '../../tests/harness/eventually.js';
import type { RunningControlPlane } from '../../tests/harness/running-control-plane.js';
import { uniqueName } from '../../tests/harness/test-env.js';
import type { SecretWatch } from './secret-watch.js';

/** Fails with the response when a REST call did not answer `expected`. */
export function ok<T>(what: string, res: ApiResponse<T>, expected: number): T {
  if (res.status !== expected) throw new Error(`${what}: HTTP ${res.status} (expected ${expected}): ${res.text.slice(0, 500)}`);
  return res.body;
}

export interface RotationTarget {
  agent: AgentProcess;
  clusterId: string;
  /** The REST path whose PUT rotates the watched value. */
  secretPath: string;
}

/**
 * What the bench rotates, set up as tests/e2e/agent-lifecycle does: a project allowed on every
 * cluster and in `namespace`, an app holding `secret`, a registered cluster whose agent process
 * enrolls with a bootstrap token (its state in `agentNs`), the app published to it. Returns
 * once `watch` saw the first value and the centre records the cluster provisioned.
 */
export async function publishToAgent(
  cp: RunningControlPlane,
  where: { namespace: string; agentNs: string; dir: string; secret: string; key: string },
  watch: SecretWatch,
): Promise<RotationTarget> {
  const api = cp.admin;
  const { namespace, dir, secret, key } = where;
  const caFile = path.join(dir, 'ca.pem');
  await writeFile(caFile, ok('trust', await api.get<{ caCertificatePem: string }>('/agents/trust'), 200).caCertificatePem);
  const project = uniqueName('bench');
  const cluster = uniqueName('edge');
  const app = 'checkout';
  ok('create project', await api.post('/projects', { name: project }), 201);
  ok('cluster selector', await api.put(`/projects/${project}/cluster-selector`, { selector: {} }), 204);
  ok('namespaces', await api.put(`/projects/${project}/namespaces`, { namespaces: [namespace] }), 200);
  ok('create app', await api.post(`/projects/${project}/apps`, { name: app, namespace, deliveryMode: 'env' }), 201);
  ok('create secret', await api.post(`/projects/${project}/apps/${app}/secrets`, { name: secret, data: { [key]: 'initial' } }), 201);
  ok('register cluster', await api.post('/clusters', { name: cluster, labels: { tier: 'bench' } }), 201);
  const token = ok('enrollment token', await api.post<{ token: string }>(`/clusters/${cluster}/enrollment-tokens`), 201).token;
  await writeFile(path.join(dir, 'token'), token, { mode: 0o600 });

  const agent = await AgentProcess.start({
    controlPlane: cp.cp.grpcAddress,
    caFile,
    cluster,
    stateSecret: `${where.agentNs}/sigil-agent-state`,
    namespaces: [namespace],
    enrollmentTokenFile: path.join(dir, 'token'),
  });
  try {
    await eventually(
      'cluster enrolled',
      async () => holds((await api.get<{ state: string }>(`/clusters/${cluster}`)).body.state === 'enrolled'),
      30_000,
    );
    await eventually('agent ready', async () => holds((await fetch(`${agent.metricsUrl}/readyz`)).ok), 30_000);
    const clusterId = ok('cluster', await api.get<{ id: string }>(`/clusters/${cluster}`), 200).id;

    const published = watch.expect(secret, 'initial', 30_000);
    ok('publish', await api.post(`/projects/${project}/apps/${app}/publish`, { clusters: [cluster] }), 200);
    await published;
    await eventually(
      'provisioned',
      async () =>
        holds(
          (await api.get<{ summary: { provisioned: number } }>(`/projects/${project}/apps/${app}/publication`)).body.summary.provisioned ===
            1,
        ),
      30_000,
    );
    return { agent, clusterId, secretPath: `/projects/${project}/apps/${app}/secrets/${secret}` };
  } catch (err) {
    process.stderr.write(`\n[bench/latency] agent log (tail):\n${agent.logs().slice(-3000)}\n`);
    await agent.stop();
    throw err;
  }
}
