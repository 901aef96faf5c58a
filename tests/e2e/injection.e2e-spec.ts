import { spawn } from 'node:child_process';
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, X509Certificate } from 'node:crypto';
import { connect as tlsConnect } from 'node:tls';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type * as k8s from '@kubernetes/client-node';
import pg from 'pg';
import { freeLoopbackPort } from '../../apps/control-plane/src/embedded/local-process.js';
import { AgentProcess } from '../harness/agent-process.js';
import { eventually } from '../harness/eventually.js';
import { metricValue } from '../harness/metrics.js';
import { createInjectionWebhook, INJECT_AUDIENCE, injectablePod, injectorEnv, podToken, runInjector } from '../harness/injection.js';
import { startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import {
  allowAnonymousIssuerDiscovery,
  createNamespace,
  kubeConfig,
  mintServiceAccountToken,
  testEnv,
  uniqueName,
} from '../harness/test-env.js';

// Injection (delivery mode inject) on the real kube-apiserver of the harness, with a real agent
// process and the real injector process: the API server calls the agent's webhook for annotated
// pods only; the injector authenticates with a TokenRequest token bound to its Pod; the agent
// verifies it with a TokenReview. No Secret is written, and the etcd data directory holds neither
// the value nor a key that opens it.

const CANARY = 'inject-canary-Vq7xw2';

describe('injection: values in pods without a Kubernetes Secret', () => {
  let cp: RunningControlPlane;
  let core: k8s.CoreV1Api;
  let admission: k8s.AdmissionregistrationV1Api;
  let agent: AgentProcess;
  let dir: string;
  let injectPort: number;
  let agentNs: string;
  let clusterId: string;
  const appNs = uniqueName('inj').slice(0, 40);
  const otherNs = uniqueName('inj-o').slice(0, 40);
  const cluster = uniqueName('edge');
  const project = uniqueName('p');
  const webhook = uniqueName('sigil-inject');
  const api = () => cp.admin;

  const ensureSa = async (ns: string, name: string) =>
    core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name } } }).catch((err: { code?: number }) => {
      if (err.code !== 409) throw err;
    });
  const createPod = (ns: string, body: k8s.V1Pod) => core.createNamespacedPod({ namespace: ns, body });

  beforeAll(async () => {
    const k8sLib = await import('@kubernetes/client-node');
    const kc = await kubeConfig();
    core = kc.makeApiClient(k8sLib.CoreV1Api);
    admission = kc.makeApiClient(k8sLib.AdmissionregistrationV1Api);
    for (const ns of [appNs, otherNs]) await core.createNamespace({ body: { metadata: { name: ns } } });
    for (const [ns, sa] of [
      [appNs, 'pay'],
      [appNs, 'other'],
      [otherNs, 'pay'],
    ] as const)
      await ensureSa(ns, sa);
    agentNs = await createNamespace('sigil-agent');
    cp = await startControlPlane();
    dir = await mkdtemp(path.join(tmpdir(), 'sigil-inject-'));
    const kube = testEnv().kube;
    await writeFile(path.join(dir, 'ca.pem'), (await api().get('/agents/trust')).body.caCertificatePem);

    expect((await api().post('/projects', { name: project })).status).toBe(201);
    expect((await api().put(`/projects/${project}/cluster-selector`, { selector: {} })).status).toBe(204);
    expect((await api().put(`/projects/${project}/namespaces`, { namespaces: [appNs] })).status).toBe(200);
    const app = await api().post(`/projects/${project}/apps`, {
      name: 'pay',
      namespace: appNs,
      deliveryMode: 'inject',
      consumers: [{ namespace: appNs, serviceAccount: 'pay' }],
    });
    expect(app.status).toBe(201);
    expect(
      (await api().post(`/projects/${project}/apps/pay/secrets`, { name: 'pay-db', data: { PASSWORD: CANARY, 'db.host': 'pg.internal' } }))
        .status,
    ).toBe(201);

    // The agent enrolls with its own service-account token and keeps its keys in memory only.
    const identity = {
      issuer: kube.issuer,
      jwksUri: `${kube.server}/openid/v1/jwks`,
      caCert: readFileSync(kube.caFile, 'utf8'),
      serviceAccount: { namespace: agentNs, name: 'sigil-agent' },
      allowPrivateAddresses: true,
    };
    await allowAnonymousIssuerDiscovery();
    expect((await api().post('/clusters', { name: cluster, kubernetesIdentity: identity })).status).toBe(201);
    await writeFile(path.join(dir, 'sa-token'), await mintServiceAccountToken(agentNs, 'sigil-agent', ['sigil']), { mode: 0o600 });

    injectPort = await freeLoopbackPort();
    await createInjectionWebhook(admission, webhook, injectPort, [appNs, otherNs]);
    agent = await AgentProcess.start(agentFlags());
    await eventually('agent ready', async () => ((await fetch(`${agent.metricsUrl}/readyz`)).ok ? true : undefined), 30_000);
    clusterId = (await api().get(`/clusters/${cluster}`)).body.id;
    expect((await api().post(`/projects/${project}/apps/pay/publish`, { clusters: [cluster] })).status).toBeLessThan(300);
    await eventually('published', async () => ((await provisioned()) ? true : undefined), 30_000);
  }, 120_000);

  const provisioned = async () => (await api().get(`/projects/${project}/apps/pay/publication`)).body.summary?.provisioned === 1;
  const agentFlags = () => ({
    controlPlane: cp.cp.grpcAddress,
    caFile: path.join(dir, 'ca.pem'),
    cluster,
    serviceAccountTokenFile: path.join(dir, 'sa-token'),
    stateMemory: true,
    inject: true,
    injectHost: '127.0.0.1',
    injectPort,
    injectUrl: `https://127.0.0.1:${injectPort}`,
    injectNames: ['127.0.0.1'],
    injectWebhook: webhook,
    injectImage: 'sigil-agent:dev',
    injectCacheDir: path.join(dir, 'cache'),
    injectCacheKeyFile: path.join(dir, 'node-local', 'cache.key'),
    restartWorkloads: true,
    restartMinInterval: 0,
  });

  afterAll(async () => {
    await admission?.deleteMutatingWebhookConfiguration({ name: webhook }).catch(() => undefined);
    await agent?.stop();
    await cp?.stop();
  });

  it('sets the webhook caBundle to the authority of the serving certificate it presents', async () => {
    const bundle = await eventually('caBundle set', async () => {
      const c = await admission.readMutatingWebhookConfiguration({ name: webhook });
      return c.webhooks?.[0]?.clientConfig.caBundle || undefined;
    });
    // The port presents a short-lived certificate signed by the authority in the caBundle (the
    // one pods pin), and a client trusting only that authority accepts it.
    const authority = new X509Certificate(Buffer.from(bundle, 'base64'));
    const presented = await new Promise<X509Certificate>((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: injectPort, ca: authority.toString() }, () => {
        resolve(socket.getPeerX509Certificate()!);
        socket.end();
      });
      socket.once('error', reject);
    });
    expect(authority.ca).toBe(true);
    expect(presented.ca).toBe(false);
    expect(presented.checkIssued(authority) && presented.verify(authority.publicKey)).toBe(true);
    const pod = (await createPod(appNs, injectablePod(uniqueName('w'), 'pay', { 'sigil.dev/inject': 'pay' }))).metadata!;
    expect(pod.annotations?.['sigil.dev/injected']).toBe('pay');
  });

  it('leaves pods without the annotation untouched, and mutates annotated ones (init container, memory volumes, token)', async () => {
    const plain = await createPod(appNs, injectablePod(uniqueName('plain'), 'pay', undefined));
    expect(plain.spec!.initContainers ?? []).toEqual([]);
    expect((plain.spec!.volumes ?? []).map((v) => v.name).filter((n) => n.startsWith('sigil'))).toEqual([]);

    const pod = await createPod(
      appNs,
      injectablePod(uniqueName('a'), 'pay', { 'sigil.dev/inject': 'pay', 'sigil.dev/inject-path': '/etc/pay' }),
    );
    const init = pod.spec!.initContainers!.find((c) => c.name === 'sigil-inject-init')!;
    expect(init.image).toBe('sigil-agent:dev');
    expect(init.securityContext).toMatchObject({ runAsUser: 1000, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
    const files = pod.spec!.volumes!.find((v) => v.name === 'sigil-inject-files')!;
    expect(files.emptyDir).toMatchObject({ medium: 'Memory' });
    const token = pod.spec!.volumes!.find((v) => v.name === 'sigil-inject-token')!;
    expect(token.projected!.sources![0]!.serviceAccountToken).toMatchObject({ audience: INJECT_AUDIENCE, expirationSeconds: 600 });
    expect(pod.spec!.containers[0]!.volumeMounts).toContainEqual(
      expect.objectContaining({ name: 'sigil-inject-files', mountPath: '/etc/pay', readOnly: true }),
    );
    // Nothing in the stored pod holds the value.
    expect(JSON.stringify(pod)).not.toContain(CANARY);
  });

  it('denies an env injection for a container with no command, with the reason', async () => {
    const err = await createPod(
      appNs,
      injectablePod(uniqueName('nocmd'), 'pay', { 'sigil.dev/inject': 'pay', 'sigil.dev/inject-env': 'true' }, null),
    ).then(
      () => 'created',
      (e: { code?: number; body?: string }) => `${e.code} ${e.body}`,
    );
    expect(err).toMatch(/^400 .*has no command/);
  });

  it('init: the injector with a pod-bound TokenRequest token writes the files (0400) and the env file; sigil-exec runs the app with them', async () => {
    const pod = await createPod(
      appNs,
      injectablePod(uniqueName('init'), 'pay', { 'sigil.dev/inject': 'pay', 'sigil.dev/inject-env': 'true' }, [
        '/bin/sh',
        '-c',
        'echo $PASSWORD',
      ]),
    );
    expect(pod.spec!.containers[0]!.command).toEqual(['/sigil/bin/sigil-exec', '/bin/sh', '-c', 'echo $PASSWORD']);
    const root = await mkdtemp(path.join(dir, 'pod-'));
    const env = await injectorEnv(pod, 'sigil-inject-init', await podToken(core, pod), root);
    const started = Date.now();
    const run = await runInjector('init', env).done;
    expect(run).toMatchObject({ code: 0 });
    expect(run.stderr).not.toContain(CANARY);
    process.stderr.write(`[injection] init wrote the files in ${Date.now() - started} ms (process start included)\n`);
    expect(await readFile(path.join(root, 'files', 'pay-db', 'PASSWORD'), 'utf8')).toBe(CANARY);
    expect(await readFile(path.join(root, 'files', 'pay-db', 'db.host'), 'utf8')).toBe('pg.internal');
    expect((await stat(path.join(root, 'files', 'pay-db', 'PASSWORD'))).mode & 0o777).toBe(0o400);
    // Only variable names go to the environment; db.host stays a file.
    expect(await readFile(path.join(root, 'env', 'env'), 'utf8')).toBe(`PASSWORD=${CANARY}\0`);
    // The wrapper the app container runs (as the webhook set its command).
    const out = await new Promise<string>((resolve) => {
      let text = '';
      const c = spawn(path.join(root, 'bin', 'sigil-exec'), ['/bin/sh', '-c', 'echo "$PASSWORD"'], {
        env: { PATH: '/usr/bin:/bin', SIGIL_EXEC_ENV_FILE: path.join(root, 'env', 'env') },
      });
      c.stdout.on('data', (b: Buffer) => (text += b.toString()));
      c.once('exit', () => resolve(text));
    });
    expect(out.trim()).toBe(CANARY);
  });

  it('refuses another service account, another audience, an expired token, an unbound token and another namespace — each counted', async () => {
    const refusals = (reason: string) => metricValue(agent.metricsUrl, 'sigil_agent_injection_refusals_total', { reason });
    const tryWith = async (token: string, pod: k8s.V1Pod) => {
      const root = await mkdtemp(path.join(dir, 'refused-'));
      const env = await injectorEnv(pod, 'sigil-inject-init', token, root);
      const run = await runInjector('init', env).done;
      expect(run.code).toBe(1);
      expect(readdirSync(path.join(root, 'files'))).toEqual([]);
      return run.stderr;
    };
    const before = {
      consumer: await refusals('not-a-consumer'),
      invalid: await refusals('token-invalid'),
      unbound: await refusals('token-not-pod-bound'),
    };
    const otherSa = await createPod(appNs, injectablePod(uniqueName('osa'), 'other', { 'sigil.dev/inject': 'pay' }));
    expect(await tryWith(await podToken(core, otherSa), otherSa)).toContain('not-a-consumer');

    const mine = await createPod(appNs, injectablePod(uniqueName('aud'), 'pay', { 'sigil.dev/inject': 'pay' }));
    expect(await tryWith(await podToken(core, mine, ['https://kubernetes.default.svc']), mine)).toContain('token-invalid');

    // Expired: the real token's claims, re-signed by the API server's own key with exp in the past.
    const real = await podToken(core, mine);
    const [h, p] = real.split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, number>;
    const now = Math.floor(Date.now() / 1000);
    const body = `${h}.${Buffer.from(JSON.stringify({ ...claims, iat: now - 900, nbf: now - 900, exp: now - 120 })).toString('base64url')}`;
    const expired = `${body}.${sign('sha256', Buffer.from(body), createPrivateKey(readFileSync(testEnv().kube.signingKeyFile))).toString('base64url')}`;
    expect(await tryWith(expired, mine)).toContain('token-invalid');

    const unbound = await mintServiceAccountToken(appNs, 'pay', [INJECT_AUDIENCE]);
    expect(await tryWith(unbound, mine)).toContain('token-not-pod-bound');

    const elsewhere = await createPod(otherNs, injectablePod(uniqueName('ons'), 'pay', { 'sigil.dev/inject': 'pay' }));
    expect(await tryWith(await podToken(core, elsewhere), elsewhere)).toContain('not-a-consumer');

    expect(await refusals('not-a-consumer')).toBe(before.consumer + 2);
    expect(await refusals('token-invalid')).toBe(before.invalid + 2);
    expect(await refusals('token-not-pod-bound')).toBe(before.unbound + 1);
  });

  it('sidecar: a rotation reaches the file within seconds; unpublish removes the files; grants reach the centre', async () => {
    const pod = await createPod(
      appNs,
      injectablePod(uniqueName('side'), 'pay', { 'sigil.dev/inject': 'pay', 'sigil.dev/inject-mode': 'sidecar' }),
    );
    expect(pod.spec!.initContainers!.map((c) => [c.name, c.restartPolicy])).toEqual([
      ['sigil-inject-init', undefined],
      ['sigil-inject-sidecar', 'Always'],
    ]);
    const root = await mkdtemp(path.join(dir, 'side-'));
    const token = await podToken(core, pod);
    expect((await runInjector('init', await injectorEnv(pod, 'sigil-inject-init', token, root)).done).code).toBe(0);
    const sidecar = runInjector('sidecar', await injectorEnv(pod, 'sigil-inject-sidecar', token, root));
    try {
      const file = path.join(root, 'files', 'pay-db', 'PASSWORD');
      await new Promise((r) => setTimeout(r, 500)); // the sidecar's first poll
      // Two opted-in workloads: the init-mode one is restarted on rotation, the sidecar one is not.
      const apps = (await kubeConfig()).makeApiClient((await import('@kubernetes/client-node')).AppsV1Api);
      for (const [name, mode] of [
        ['init-web', 'init'],
        ['side-web', 'sidecar'],
      ] as const) {
        const template = injectablePod(name, 'pay', { 'sigil.dev/inject': 'pay', 'sigil.dev/inject-mode': mode });
        await apps.createNamespacedDeployment({
          namespace: appNs,
          body: {
            metadata: { name, annotations: { 'sigil.dev/restart-on-change': 'true' } },
            spec: {
              selector: { matchLabels: { app: name } },
              template: { metadata: { labels: { app: name }, annotations: template.metadata!.annotations }, spec: template.spec! },
            },
          },
        });
      }
      const rotated = `${CANARY}-v2`;
      const started = Date.now();
      expect(
        (await api().put(`/projects/${project}/apps/pay/secrets/pay-db`, { data: { PASSWORD: rotated, 'db.host': 'pg.internal' } })).status,
      ).toBe(200);
      await eventually('rotated file', async () => ((await readFile(file, 'utf8').catch(() => '')) === rotated ? true : undefined), 15_000);
      process.stderr.write(`[injection] rotation reached the sidecar's file in ${Date.now() - started} ms\n`);
      const restartedAt = async (name: string) =>
        (await apps.readNamespacedDeployment({ namespace: appNs, name })).spec!.template.metadata!.annotations?.['sigil.dev/restarted-at'];
      await eventually('init-mode workload restarted', async () => ((await restartedAt('init-web')) ? true : undefined));
      expect(await restartedAt('side-web')).toBeUndefined();

      await eventually(
        'grants at the centre',
        async () => {
          const items = (await api().get(`/projects/${project}/apps/pay/consumption`)).body.items as Array<Record<string, unknown>>;
          return items?.some((i) => i.namespace === appNs && i.serviceAccount === 'pay' && i.cluster === cluster) ? items : undefined;
        },
        20_000,
      );

      expect((await api().post(`/projects/${project}/apps/pay/unpublish`, { clusters: [cluster] })).status).toBeLessThan(300);
      await eventually('files removed', () => (readdirSync(path.join(root, 'files')).length === 0 ? true : undefined), 20_000);
      expect(sidecar.stderr()).not.toContain(CANARY);
    } finally {
      sidecar.kill();
    }
    // Published again for the tests below.
    expect((await api().post(`/projects/${project}/apps/pay/publish`, { clusters: [cluster] })).status).toBeLessThan(300);
    await eventually('published again', async () => ((await provisioned()) ? true : undefined), 30_000);
  });

  it('a disabled cluster gets nothing: the agent refuses at once, and serves again once enabled', async () => {
    const pod = await createPod(appNs, injectablePod(uniqueName('dis'), 'pay', { 'sigil.dev/inject': 'pay' }));
    const token = await podToken(core, pod);
    const fetchOnce = async () =>
      await runInjector('init', await injectorEnv(pod, 'sigil-inject-init', token, await mkdtemp(path.join(dir, 'dis-')))).done;
    expect((await api().post(`/clusters/${cluster}/disable`)).status).toBeLessThan(300);
    const refused = await eventually(
      'refused while disabled',
      async () => {
        const r = await fetchOnce();
        return r.code === 1 ? r : undefined;
      },
      20_000,
    );
    expect(refused.stderr).toContain('app-not-published');
    expect((await api().post(`/clusters/${cluster}/enable`)).status).toBeLessThan(300);
    await eventually('served again', async () => ((await fetchOnce()).code === 0 ? true : undefined), 60_000);
  });

  it('leaves no Secret with the value in the API server, and nothing in etcd that holds or opens it', async () => {
    const all = await core.listSecretForAllNamespaces();
    for (const s of all.items) {
      for (const v of Object.values(s.data ?? {})) expect(Buffer.from(v, 'base64').toString()).not.toContain(CANARY);
      expect(s.metadata?.annotations?.['sigil.dev/cluster']).not.toBe(clusterId);
    }
    // The etcd data directory, every file, raw: the value is not there, this cluster's id is in no
    // object (no agent state, no delivered Secret), and no private key in it matches this cluster's
    // delivery public key.
    const db = new pg.Client({ connectionString: cp.databaseUrl });
    await db.connect();
    const keys = (
      await db.query<{ k: Buffer }>('SELECT agent_public_key AS k FROM cluster_keys WHERE cluster_id = $1', [clusterId])
    ).rows.map((r) => r.k.toString('base64'));
    await db.end();
    expect(keys.length).toBeGreaterThan(0);
    // A control the scan must find: a Secret holding a marker and a private key, stored the way
    // an agent's state Secret would be.
    const marker = `etcd-scan-control-${randomBytes(6).toString('hex')}`;
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const controlSpki = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
    await core.createNamespacedSecret({
      namespace: otherNs,
      body: {
        metadata: { name: 'scan-control' },
        stringData: { marker, 'key.pem': privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() },
      },
    });
    const etcdDir = path.join(testEnv().root, 'kube', 'etcd');
    const files: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d)) {
        const p = path.join(d, e);
        if (statSync(p).isDirectory()) walk(p);
        else files.push(p);
      }
    };
    walk(etcdDir);
    expect(files.length).toBeGreaterThan(0);
    let pemKeys = 0;
    let controlFound = false;
    let markerFound = false;
    for (const f of files) {
      const bytes = readFileSync(f);
      markerFound ||= bytes.includes(marker);
      expect(bytes.includes(CANARY)).toBe(false);
      expect(bytes.includes(clusterId)).toBe(false);
      const text = bytes.toString('latin1');
      for (const m of text.matchAll(
        /-----BEGIN (?:RSA |EC )?PRIVATE KEY-----[A-Za-z0-9+/=\r\n\\n]+-----END (?:RSA |EC )?PRIVATE KEY-----/g,
      )) {
        pemKeys += 1;
        let spki: string;
        try {
          spki = createPublicKey(m[0].replace(/\\n/g, '\n')).export({ type: 'spki', format: 'der' }).toString('base64');
        } catch {
          continue;
        }
        expect(keys).not.toContain(spki);
        controlFound ||= spki === controlSpki;
      }
    }
    expect([markerFound, controlFound]).toEqual([true, true]);
    process.stderr.write(
      `[injection] scanned ${files.length} etcd files: ${pemKeys} private keys there (the control's among them), none this cluster's\n`,
    );
  });

  it('restarted while the control plane is unreachable, the agent serves pods from its sealed cache, under the same authority', async () => {
    const bundle = (await admission.readMutatingWebhookConfiguration({ name: webhook })).webhooks![0]!.clientConfig.caBundle;
    const pod = await createPod(appNs, injectablePod(uniqueName('off'), 'pay', { 'sigil.dev/inject': 'pay' }));
    const token = await podToken(core, pod);
    await cp.cp.stop();
    await agent.stop();
    agent = await AgentProcess.start(agentFlags());
    await eventually('restored from the cache', () =>
      agent.logs().includes('restored inject-mode secrets from the injection cache') ? true : undefined,
    );
    const root = await mkdtemp(path.join(dir, 'off-'));
    const run = await runInjector('init', await injectorEnv(pod, 'sigil-inject-init', token, root)).done;
    expect(run).toMatchObject({ code: 0 });
    expect(await readFile(path.join(root, 'files', 'pay-db', 'PASSWORD'), 'utf8')).toBe(`${CANARY}-v2`);
    // The authority the pod pinned is still the agent's.
    expect((await admission.readMutatingWebhookConfiguration({ name: webhook })).webhooks![0]!.clientConfig.caBundle).toBe(bundle);
    const cacheFile = readFileSync(path.join(dir, 'cache', 'injection-cache.sgc'));
    expect(cacheFile.includes(CANARY)).toBe(false);
  });
});
