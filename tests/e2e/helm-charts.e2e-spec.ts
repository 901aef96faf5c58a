import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type * as k8s from '@kubernetes/client-node';
import { loadAll } from 'js-yaml';
import { AgentProcess } from '../harness/agent-process.js';
import { eventually } from '../harness/eventually.js';
import { REPO_ROOT } from '../harness/control-plane-process.js';
import { startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import { createNamespace, kubeConfig, mintServiceAccountToken, testEnv, uniqueName } from '../harness/test-env.js';

// The Helm charts: lint and render with default and CI values, the rendered manifests accepted
// by a real kube-apiserver (server-side dry run), and the agent running under exactly the RBAC
// its chart grants through a publish and an unpublish.

const HELM = process.env.SIGIL_HELM ?? path.join(process.env.SIGIL_CACHE ?? path.join(homedir(), '.cache/sigil'), 'bin/helm');
const CHARTS = ['sigil-agent', 'sigil-control-plane'] as const;
const chart = (name: string) => path.join(REPO_ROOT, 'charts', name);
const helm = (...args: string[]) => execFileSync(HELM, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const render = (...args: string[]) => (loadAll(helm('template', ...args)) as Array<k8s.KubernetesObject | null>).filter((d) => d !== null);

describe('Helm charts', () => {
  let objects: k8s.KubernetesObjectApi;
  let core: k8s.CoreV1Api;
  let authz: k8s.AuthorizationV1Api;

  beforeAll(async () => {
    if (!existsSync(HELM)) throw new Error(`helm not found at ${HELM}; \`make test\` builds it`);
    const k8sLib = await import('@kubernetes/client-node');
    const kc = await kubeConfig();
    objects = k8sLib.KubernetesObjectApi.makeApiClient(kc);
    core = kc.makeApiClient(k8sLib.CoreV1Api);
    authz = kc.makeApiClient(k8sLib.AuthorizationV1Api);
  });

  it.each(CHARTS)('%s: helm lint passes with default and CI values', (name) => {
    expect(helm('lint', chart(name))).toContain('0 chart(s) failed');
    expect(helm('lint', chart(name), '-f', path.join(chart(name), 'ci/ci-values.yaml'))).toContain('0 chart(s) failed');
  });

  it('values.schema.json refuses bad values with a message naming them', () => {
    expect(() => helm('template', 't', chart('sigil-agent'), '--set', 'cluster=Not_A_Name')).toThrow(/cluster/);
    expect(() => helm('template', 't', chart('sigil-control-plane'), '--set', 'hsm.mode=cloud')).toThrow(/hsm\/mode|hsm.mode/);
  });

  it.each([
    ['sigil-agent', 'default values'],
    ['sigil-agent', 'CI values'],
    ['sigil-control-plane', 'default values'],
    ['sigil-control-plane', 'CI values'],
  ])('%s with %s: every rendered manifest is accepted by the API server (server-side dry run)', async (name, which) => {
    const ns = await createNamespace('chart');
    for (const served of ['shop', 'reports']) await core.createNamespace({ body: { metadata: { name: served } } }).catch(() => undefined);
    const docs = render(
      't',
      chart(name),
      '--namespace',
      ns,
      ...(which === 'CI values' ? ['-f', path.join(chart(name), 'ci/ci-values.yaml')] : []),
    );
    expect(docs.length).toBeGreaterThan(3);
    for (const doc of docs) await objects.create(doc, undefined, 'All');
    // The pods are locked down.
    const deployment = docs.find((d) => d.kind === 'Deployment') as k8s.V1Deployment;
    const c = deployment.spec!.template.spec!.containers[0]!;
    expect(c.securityContext).toMatchObject({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });
    expect(deployment.spec!.template.spec!.securityContext).toMatchObject({ runAsNonRoot: true });
  });

  describe('the agent under exactly the RBAC its chart grants', () => {
    let cp: RunningControlPlane;
    let agent: AgentProcess | undefined;
    let agentNs: string;
    let served: string;
    let other: string;
    const cluster = uniqueName('rbac');
    const project = uniqueName('p');

    beforeAll(async () => {
      agentNs = await createNamespace('agent');
      served = await createNamespace('served');
      other = await createNamespace('other');
      const rbacDocs = render(
        'sigil-agent',
        chart('sigil-agent'),
        '--namespace',
        agentNs,
        '--set',
        `cluster=${cluster}`,
        '--set',
        `namespaces={${served}}`,
        '--show-only',
        'templates/serviceaccount.yaml',
        '--show-only',
        'templates/rbac.yaml',
      );
      for (const doc of rbacDocs) await objects.create(doc);
      cp = await startControlPlane();
      const api = cp.admin;
      await api.post('/projects', { name: project });
      await api.put(`/projects/${project}/cluster-selector`, { selector: {} });
      await api.put(`/projects/${project}/namespaces`, { namespaces: [served] });
      await api.post(`/projects/${project}/apps`, { name: 'web', namespace: served, deliveryMode: 'env' });
      await api.post(`/projects/${project}/apps/web/secrets`, { name: 'web-db', data: { PASSWORD: 'rbac-canary' } });
      await api.post('/clusters', { name: cluster });
    });

    afterAll(async () => {
      await agent?.stop();
      await cp?.stop();
    });

    it('grants what the agent needs and nothing broader', async () => {
      const user = `system:serviceaccount:${agentNs}:sigil-agent`;
      const can = async (namespace: string | undefined, verb: string, resource: string, group = '', name?: string) =>
        (
          await authz.createSubjectAccessReview({
            body: { spec: { user, groups: ['system:serviceaccounts'], resourceAttributes: { namespace, verb, resource, group, name } } },
          })
        ).status?.allowed ?? false;
      for (const verb of ['get', 'list', 'watch', 'create', 'update', 'delete'])
        expect([verb, await can(served, verb, 'secrets')]).toEqual([verb, true]);
      expect(await can(agentNs, 'get', 'secrets', '', 'sigil-agent-state')).toBe(true);
      expect(await can(agentNs, 'get', 'secrets', '', 'someone-elses')).toBe(false);
      expect(await can(agentNs, 'list', 'secrets')).toBe(false);
      expect(await can(other, 'get', 'secrets')).toBe(false);
      expect(await can(undefined, 'list', 'secrets')).toBe(false);
      expect(await can(served, 'patch', 'deployments', 'apps')).toBe(false); // restarts not enabled
      expect(await can(served, 'get', 'configmaps')).toBe(false);
    });

    it('publishes and unpublishes through that identity', async () => {
      const kube = testEnv().kube;
      const dir = await mkdtemp(path.join(tmpdir(), 'sigil-rbac-'));
      const token = await mintServiceAccountToken(agentNs, 'sigil-agent', [kube.issuer], 3600);
      const kubeconfig = path.join(dir, 'kubeconfig');
      await writeFile(
        kubeconfig,
        [
          'apiVersion: v1',
          'kind: Config',
          'current-context: agent',
          `clusters: [{ name: test, cluster: { server: '${kube.server}', certificate-authority-data: ${readFileSync(kube.caFile).toString('base64')} } }]`,
          `users: [{ name: agent, user: { token: '${token}' } }]`,
          'contexts: [{ name: agent, context: { cluster: test, user: agent } }]',
        ].join('\n'),
        { mode: 0o600 },
      );
      await writeFile(path.join(dir, 'ca.pem'), (await cp.admin.get('/agents/trust')).body.caCertificatePem);
      await writeFile(path.join(dir, 'token'), (await cp.admin.post(`/clusters/${cluster}/enrollment-tokens`)).body.token);
      agent = await AgentProcess.start({
        controlPlane: cp.cp.grpcAddress,
        caFile: path.join(dir, 'ca.pem'),
        cluster,
        kubeconfig,
        stateSecret: `${agentNs}/sigil-agent-state`,
        namespaces: [served],
        enrollmentTokenFile: path.join(dir, 'token'),
      });
      await cp.admin.post(`/projects/${project}/apps/web/publish`, { clusters: [cluster] });
      const secret = await eventually('Secret written', () => core.readNamespacedSecret({ namespace: served, name: 'web-db' }));
      expect(Buffer.from(secret.data!.PASSWORD!, 'base64').toString()).toBe('rbac-canary');
      await eventually('provisioned', async () =>
        (await cp.admin.get(`/projects/${project}/apps/web/publication`)).body.summary.provisioned === 1 ? true : undefined,
      );
      await cp.admin.post(`/projects/${project}/apps/web/unpublish`, {});
      await eventually('Secret deleted', async () =>
        (await core.readNamespacedSecret({ namespace: served, name: 'web-db' }).catch(() => undefined)) ? undefined : true,
      );
      await eventually('deprovisioned', async () =>
        (await cp.admin.get(`/projects/${project}/apps/web/publication`)).body.deliveries[0]?.state === 'deprovisioned' ? true : undefined,
      );
      expect(agent.logs()).not.toMatch(/Forbidden|KubeError|Kubernetes API 4/);
    });
  });
});
