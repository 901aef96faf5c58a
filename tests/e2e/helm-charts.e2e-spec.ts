import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type * as k8s from '@kubernetes/client-node';
import { loadAll } from 'js-yaml';
import { AgentProcess } from '../harness/agent-process.js';
import { selfSigned } from '../harness/certificates.js';
import { eventually } from '../harness/eventually.js';
import { REPO_ROOT } from '../harness/control-plane-process.js';
import { startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import { createNamespace, kubeConfig, mintServiceAccountToken, testEnv, uniqueName } from '../harness/test-env.js';

// The Helm charts: lint and render with default and CI values, the rendered manifests accepted
// by a real kube-apiserver (server-side dry run), and the agent running under exactly the RBAC
// its chart grants through a publish and an unpublish. With inject.enabled: the webhook
// configuration installed by `helm install` and called by the API server for annotated pods
// only, the agent's service account able to review tokens and patch that one configuration and
// nothing more, and `helm upgrade` leaving the caBundle the agent set.

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
    expect(() => helm('template', 't', chart('sigil-agent'), '--set', 'inject.failurePolicy=Sometimes')).toThrow(/inject\/failurePolicy/);
    expect(() => helm('template', 't', chart('sigil-agent'), '--set', 'inject.timeoutSeconds=31')).toThrow(/inject\/timeoutSeconds/);
    expect(() => helm('template', 't', chart('sigil-agent'), '--set', 'inject.resources.request.cpu=1')).toThrow(/inject\/resources/);
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

  it('sigil-agent with inject.enabled: the webhook, its Service and the agent flags name each other; off by default', () => {
    const docs = render('rel', chart('sigil-agent'), '--namespace', 'ns1', '--set', 'inject.enabled=true');
    const find = <T>(kind: string) => docs.filter((d) => d.kind === kind) as T[];
    const [webhook, ...moreWebhooks] = find<k8s.V1MutatingWebhookConfiguration>('MutatingWebhookConfiguration');
    expect(moreWebhooks).toEqual([]);
    expect(webhook!.metadata!.name).toBe('rel-inject');
    expect(webhook!.webhooks).toEqual([
      {
        name: 'inject.sigil.dev',
        // No caBundle: the agent owns it (templates/inject.yaml).
        clientConfig: { service: { namespace: 'ns1', name: 'rel-inject', port: 8443, path: '/mutate' } },
        rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'], scope: 'Namespaced' }],
        matchConditions: [
          {
            name: 'sigil-inject-annotation',
            expression: "has(object.metadata.annotations) && 'sigil.dev/inject' in object.metadata.annotations",
          },
        ],
        failurePolicy: 'Fail',
        timeoutSeconds: 10,
        sideEffects: 'None',
        admissionReviewVersions: ['v1'],
        reinvocationPolicy: 'Never',
        // Only the namespaces this agent serves (the default `namespaces: [default]`).
        namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: ['default'] }] },
      },
    ]);
    const service = find<k8s.V1Service>('Service').find((d) => d.metadata!.name === 'rel-inject')!;
    expect(service.spec!.ports).toEqual([{ name: 'inject', port: 8443, targetPort: 'inject', protocol: 'TCP' }]);
    const deployment = find<k8s.V1Deployment>('Deployment')[0]!;
    expect(deployment.spec!.template.metadata!.labels).toMatchObject(service.spec!.selector!);
    const agent = deployment.spec!.template.spec!.containers[0]!;
    expect(agent.ports).toContainEqual({ name: 'inject', containerPort: 8443 });
    expect(agent.args).toEqual(
      expect.arrayContaining([
        '--inject',
        '--inject-port=8443',
        '--inject-service=ns1/rel-inject',
        '--inject-webhook=rel-inject',
        `--inject-image=${agent.image}`,
        // Per installation: a token made for another agent is refused here.
        '--inject-audience=sigil-inject.ns1.rel',
        // The sealed cache in an emptyDir of the pod (docs/injection.md).
        '--inject-cache-dir=/var/lib/sigil/inject-cache/data',
        '--inject-cache-key-file=/var/lib/sigil/inject-cache/key',
      ]),
    );
    expect(deployment.spec!.template.spec!.volumes).toContainEqual({ name: 'inject-cache', emptyDir: {} });
    const clusterWide = render(
      'rel',
      chart('sigil-agent'),
      '--namespace',
      'ns1',
      '--set',
      'inject.enabled=true',
      '--set',
      'clusterWide=true',
    );
    const everywhere = clusterWide.find((d) => d.kind === 'MutatingWebhookConfiguration') as k8s.V1MutatingWebhookConfiguration;
    expect(everywhere.webhooks![0]!.namespaceSelector).toBeUndefined();
    const resources = agent
      .args!.find((a) => a.startsWith('--inject-resources='))!
      .split('=')
      .slice(1)
      .join('=');
    expect(JSON.parse(resources)).toEqual({ requests: { cpu: '5m', memory: '48Mi' }, limits: { memory: '96Mi' } });

    const off = render('rel', chart('sigil-agent'), '--namespace', 'ns1');
    expect(off.map((d) => d.kind)).not.toContain('MutatingWebhookConfiguration');
    expect(off.map((d) => d.kind)).not.toContain('Service');
    expect(off.map((d) => d.kind)).not.toContain('ClusterRole');
    const offArgs = (off.find((d) => d.kind === 'Deployment') as k8s.V1Deployment).spec!.template.spec!.containers[0]!.args!;
    expect(offArgs.filter((a) => a.startsWith('--inject'))).toEqual([]);
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
      // Injection not enabled: no token reviews, no webhook configurations.
      expect(await can(undefined, 'create', 'tokenreviews', 'authentication.k8s.io')).toBe(false);
      expect(await can(undefined, 'patch', 'mutatingwebhookconfigurations', 'admissionregistration.k8s.io', 'sigil-agent-inject')).toBe(
        false,
      );
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

  describe('inject.enabled on the real API server: `helm install`, the webhook, the agent under exactly its RBAC, `helm upgrade`', () => {
    const release = uniqueName('inj');
    const webhookName = `${release}-inject`;
    const otherWebhook = `${release}-someone-elses`;
    const WEBHOOK_GROUP = 'admissionregistration.k8s.io';
    let agentNs: string;
    let podNs: string;
    let unselectedNs: string;
    let lib: typeof k8s;
    let admission: k8s.AdmissionregistrationV1Api;
    /** Clients authenticated as the agent's service account, with a token the API server minted for it. */
    let asAgent: { objects: k8s.KubernetesObjectApi; core: k8s.CoreV1Api; authn: k8s.AuthenticationV1Api };
    const helmOnCluster = (...args: string[]) => helm(...args, '--kubeconfig', testEnv().kube.kubeconfig);
    const webhook = async () => (await admission.readMutatingWebhookConfiguration({ name: webhookName })).webhooks![0]!;
    /** What the agent does with its serving CA: a strategic merge patch of the caBundle only (merged into the webhook by name). */
    const patchCaBundle = (name: string, caBundle: string) =>
      asAgent.objects.patch(
        {
          apiVersion: `${WEBHOOK_GROUP}/v1`,
          kind: 'MutatingWebhookConfiguration',
          metadata: { name },
          webhooks: [{ name: 'inject.sigil.dev', clientConfig: { caBundle } }],
        } as k8s.KubernetesObject,
        undefined,
        undefined,
        'sigil-agent',
        undefined,
        lib.PatchStrategy.StrategicMergePatch,
      );
    const pod = (name: string, annotations?: Record<string, string>): k8s.V1Pod => ({
      metadata: { name, annotations },
      spec: { containers: [{ name: 'app', image: 'registry.example.com/app:1', command: ['/app'] }] },
    });

    beforeAll(async () => {
      lib = await import('@kubernetes/client-node');
      admission = (await kubeConfig()).makeApiClient(lib.AdmissionregistrationV1Api);
      agentNs = await createNamespace('inj-agent');
      podNs = await createNamespace('inj-pods');
      unselectedNs = await createNamespace('inj-unselected');
      helmOnCluster(
        'install',
        release,
        chart('sigil-agent'),
        '--namespace',
        agentNs,
        '--set',
        `namespaces={${podNs}}`,
        '--set',
        'inject.enabled=true',
        // No agent serves the webhook here: calls fail fast, and only in this test's namespace.
        '--set',
        'inject.timeoutSeconds=2',
        '--set-json',
        `inject.namespaceSelector={"matchLabels":{"kubernetes.io/metadata.name":"${podNs}"}}`,
      );
      await admission.createMutatingWebhookConfiguration({ body: { metadata: { name: otherWebhook }, webhooks: [] } });
      const kube = testEnv().kube;
      const kc = new lib.KubeConfig();
      kc.loadFromOptions({
        clusters: [{ name: 'test', server: kube.server, caData: readFileSync(kube.caFile).toString('base64') }],
        users: [{ name: 'agent', token: await mintServiceAccountToken(agentNs, 'sigil-agent', [kube.issuer], 3600) }],
        contexts: [{ name: 'agent', cluster: 'test', user: 'agent' }],
        currentContext: 'agent',
      });
      asAgent = {
        objects: lib.KubernetesObjectApi.makeApiClient(kc),
        core: kc.makeApiClient(lib.CoreV1Api),
        authn: kc.makeApiClient(lib.AuthenticationV1Api),
      };
    });

    afterAll(async () => {
      if (agentNs) {
        try {
          helmOnCluster('uninstall', release, '--namespace', agentNs);
        } catch {
          // not installed: beforeAll failed and says why
        }
      }
      await admission?.deleteMutatingWebhookConfiguration({ name: otherWebhook }).catch(() => undefined);
    });

    it('registers the webhook: pods without the annotation are admitted untouched, annotated ones depend on the agent (Fail)', async () => {
      expect((await webhook()).clientConfig).toEqual({ service: { namespace: agentNs, name: webhookName, port: 8443, path: '/mutate' } });
      const plain = await core.createNamespacedPod({ namespace: podNs, body: pod('plain', { unrelated: 'x' }) });
      expect(plain.spec!.initContainers).toBeUndefined();
      expect(plain.spec!.containers.map((c) => [c.name, c.command, c.env])).toEqual([['app', ['/app'], undefined]]);
      // The API server calls the webhook for this one; no agent answers, and Fail refuses the pod.
      await expect(core.createNamespacedPod({ namespace: podNs, body: pod('annotated', { 'sigil.dev/inject': 'web' }) })).rejects.toThrow(
        /failed calling webhook \W*inject\.sigil\.dev/,
      );
      // namespaceSelector: outside the selected namespaces even an annotated pod is not sent.
      await core.createNamespacedPod({ namespace: unselectedNs, body: pod('annotated', { 'sigil.dev/inject': 'web' }) });
    });

    it("lets the agent's service account review tokens and get/patch its own webhook configuration, and nothing more", async () => {
      const user = `system:serviceaccount:${agentNs}:sigil-agent`;
      const can = async (namespace: string | undefined, verb: string, resource: string, group = '', name?: string) =>
        (
          await authz.createSubjectAccessReview({
            body: { spec: { user, groups: ['system:serviceaccounts'], resourceAttributes: { namespace, verb, resource, group, name } } },
          })
        ).status?.allowed ?? false;
      const granted: Array<[string, string, string, string?]> = [
        ['create', 'tokenreviews', 'authentication.k8s.io'],
        ['get', 'mutatingwebhookconfigurations', WEBHOOK_GROUP, webhookName],
        ['patch', 'mutatingwebhookconfigurations', WEBHOOK_GROUP, webhookName],
      ];
      const refused: Array<[string, string, string, string?]> = [
        ['patch', 'mutatingwebhookconfigurations', WEBHOOK_GROUP, otherWebhook],
        ['get', 'mutatingwebhookconfigurations', WEBHOOK_GROUP, otherWebhook],
        ['list', 'mutatingwebhookconfigurations', WEBHOOK_GROUP],
        ['create', 'mutatingwebhookconfigurations', WEBHOOK_GROUP],
        ['update', 'mutatingwebhookconfigurations', WEBHOOK_GROUP, webhookName],
        ['delete', 'mutatingwebhookconfigurations', WEBHOOK_GROUP, webhookName],
        ['patch', 'validatingwebhookconfigurations', WEBHOOK_GROUP],
        ['create', 'subjectaccessreviews', 'authorization.k8s.io'],
        ['create', 'serviceaccounts/token', ''],
        ['get', 'secrets', ''],
        ['list', 'secrets', ''],
        ['get', 'pods', ''],
      ];
      for (const [verb, resource, group, name] of granted)
        expect([verb, resource, name, await can(undefined, verb, resource, group, name)]).toEqual([verb, resource, name, true]);
      for (const [verb, resource, group, name] of refused)
        expect([verb, resource, name, await can(undefined, verb, resource, group, name)]).toEqual([verb, resource, name, false]);
      expect(await can(unselectedNs, 'get', 'secrets')).toBe(false);
      expect(await can(podNs, 'get', 'pods')).toBe(false);

      // The same rights exercised for real, as the agent will: review a pod's token (audience sigil-inject) ...
      const podToken = await mintServiceAccountToken(podNs, 'app', ['sigil-inject'], 600);
      const review = await asAgent.authn.createTokenReview({ body: { spec: { token: podToken, audiences: ['sigil-inject'] } } });
      expect(review.status).toMatchObject({
        authenticated: true,
        audiences: ['sigil-inject'],
        user: { username: `system:serviceaccount:${podNs}:app` },
      });
      // ... set the caBundle of its own webhook configuration, and of no other.
      const ca = Buffer.from(selfSigned('sigil-inject-ca-1').cert).toString('base64');
      await patchCaBundle(webhookName, ca);
      expect((await webhook()).clientConfig.caBundle).toBe(ca);
      await expect(patchCaBundle(otherWebhook, ca)).rejects.toMatchObject({ code: 403 });
      // Patch on its own configuration is limited to the caBundle (the chart's ValidatingAdmissionPolicy):
      // rules, selectors, the failure policy or the address are refused. Dry runs (admission runs,
      // nothing is stored), retried until the API server has loaded the just-installed policy.
      const tryChange = (change: object) =>
        asAgent.objects
          .patch(
            {
              apiVersion: `${WEBHOOK_GROUP}/v1`,
              kind: 'MutatingWebhookConfiguration',
              metadata: { name: webhookName },
              webhooks: [{ name: 'inject.sigil.dev', ...change }],
            } as k8s.KubernetesObject,
            undefined,
            'All',
            'sigil-agent',
            undefined,
            lib.PatchStrategy.StrategicMergePatch,
          )
          .then(
            () => 'patched',
            (e: { code?: number; body?: string }) => `${e.code} ${e.body}`,
          );
      await eventually('the policy is in force', async () =>
        (await tryChange({ failurePolicy: 'Ignore' })).startsWith('422') ? true : undefined,
      );
      for (const change of [
        { rules: [{ apiGroups: ['*'], apiVersions: ['*'], operations: ['*'], resources: ['*'], scope: '*' }] },
        { namespaceSelector: { matchLabels: { 'widened-by': 'agent' } } },
        { failurePolicy: 'Ignore' },
        { clientConfig: { url: 'https://attacker.example/mutate', service: null } },
      ])
        expect([Object.keys(change)[0], await tryChange(change)]).toEqual([
          Object.keys(change)[0],
          expect.stringMatching(/^422 .*only the caBundle/),
        ]);
      // A caBundle change still passes it (dry run).
      expect(await tryChange({ clientConfig: { caBundle: Buffer.from(selfSigned('sigil-inject-ca-2').cert).toString('base64') } })).toBe(
        'patched',
      );
      expect((await webhook()).clientConfig).toMatchObject({ caBundle: ca, service: { name: webhookName } });
      await expect(asAgent.core.listSecretForAllNamespaces()).rejects.toMatchObject({ code: 403 });
      await expect(asAgent.core.listNamespacedSecret({ namespace: unselectedNs })).rejects.toMatchObject({ code: 403 });
    });

    it.each(['auto', 'false'])(
      'helm upgrade (--server-side=%s) keeps the caBundle the agent set and applies the chart change',
      async (serverSide) => {
        const ca = Buffer.from(selfSigned(`sigil-inject-ca-${serverSide}`).cert).toString('base64');
        await patchCaBundle(webhookName, ca);
        const timeoutSeconds = serverSide === 'auto' ? 3 : 4;
        helmOnCluster(
          'upgrade',
          release,
          chart('sigil-agent'),
          '--namespace',
          agentNs,
          '--reuse-values',
          '--server-side',
          serverSide,
          '--set',
          `inject.timeoutSeconds=${timeoutSeconds}`,
        );
        expect(await webhook()).toMatchObject({
          timeoutSeconds,
          clientConfig: { caBundle: ca, service: { name: webhookName, path: '/mutate' } },
        });
      },
    );
  });
});
