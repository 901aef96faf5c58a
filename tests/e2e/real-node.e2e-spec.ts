import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { freeLoopbackPort } from '../../apps/control-plane/src/embedded/local-process.js';
import { ApiClient } from '../harness/api-client.js';
import { REPO_ROOT } from '../harness/control-plane-process.js';
import { eventually } from '../harness/eventually.js';
import { busyboxPod, NodeCluster, podReady, type AgentRelease } from '../harness/real-node-charts.js';
import { ensureImages, IMAGE_ARCHIVES, RealNode } from '../harness/real-node.js';
import { ADMIN_TOKEN, startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import { createTestDatabase, testEnv, uniqueName } from '../harness/test-env.js';

// Sigil on a real node: the images built from the repository's Dockerfiles, installed with its
// Helm charts, pods started by a kubelet reading the Secrets the agent delivers. One node for the
// whole file (tests/harness/real-node.ts); pods start in parallel where the story allows.

const AGENT_TARGET_RSS_MIB = 60; // docs/decisions/007

describe('Sigil on a real node (kubelet, containerd, runc)', () => {
  let node: RealNode;
  let cluster: NodeCluster;
  let cp: RunningControlPlane;
  let caPem: string;
  let controlPlaneImage: Promise<unknown>;
  const project = uniqueName('node');
  const served = 'shop';
  const token = { release: 'agent-token', namespace: 'sigil-token', cluster: uniqueName('tok') };
  const identity = { release: 'agent-identity', namespace: 'sigil-identity', cluster: uniqueName('sa') };
  const agentProcess = (clusterName: string) => findProcess(`--cluster=${clusterName}`);
  const api = () => cp.admin;
  const publication = async (app: string) => (await api().get(`/projects/${project}/apps/${app}/publication`)).body;

  beforeAll(async () => {
    const started = Date.now();
    ensureImages();
    node = await RealNode.start();
    await node.importImages(['sigil-agent', 'sigil-busybox'].map((i) => path.join(IMAGE_ARCHIVES, `${i}.tar`)));
    // The largest image, needed by the last test only: imported while the others run.
    controlPlaneImage = node.importImages([path.join(IMAGE_ARCHIVES, 'sigil-control-plane.tar')]).then(
      () => undefined,
      (err: unknown) => err,
    );
    cluster = await NodeCluster.connect(node);
    await cluster.allowAnonymousIssuerDiscovery();
    cp = await startControlPlane();
    caPem = (await api().get<{ caCertificatePem: string }>('/agents/trust')).body.caCertificatePem;
    expect((await api().post('/projects', { name: project })).status).toBe(201);
    await api().put(`/projects/${project}/cluster-selector`, { selector: {} });
    await api().put(`/projects/${project}/namespaces`, { namespaces: [served] });
    expect((await api().post(`/projects/${project}/apps`, { name: 'web', namespace: served, deliveryMode: 'env' })).status).toBe(201);
    expect((await api().post(`/projects/${project}/apps`, { name: 'files', namespace: served, deliveryMode: 'volume' })).status).toBe(201);
    await api().post(`/projects/${project}/apps/web/secrets`, { name: 'web-db', data: { PASSWORD: 'node-canary-v1' } });
    await api().post(`/projects/${project}/apps/files/secrets`, { name: 'files-tls', data: { 'key.pem': 'node-file-canary-v1' } });

    // Two agents, one per enrollment mode, installed side by side.
    expect((await api().post('/clusters', { name: token.cluster })).status).toBe(201);
    expect(
      (await api().post('/clusters', { name: identity.cluster, kubernetesIdentity: cluster.kubernetesIdentity(identity.namespace) }))
        .status,
    ).toBe(201);
    const bootstrap = (await api().post(`/clusters/${token.cluster}/enrollment-tokens`)).body.token as string;
    const common = { controlPlane: cp.cp.grpcAddress, caPem, restartWorkloads: true };
    // Host-network ports of both agents: distinct (a port just freed can be handed out again).
    const ports = new Set<number>();
    while (ports.size < 3) ports.add(await freeLoopbackPort());
    const [tokenMetrics, identityMetrics, identityInject] = [...ports] as [number, number, number];
    await Promise.all([
      cluster.installAgent({
        ...token,
        ...common,
        enrollment: { mode: 'token', token: bootstrap },
        namespaces: [served],
        metricsPort: tokenMetrics,
      }),
      cluster.installAgent({
        ...identity,
        ...common,
        enrollment: { mode: 'kubernetesIdentity' },
        namespaces: ['reports'],
        metricsPort: identityMetrics,
        // This one also injects (docs/injection.md), and keeps its keys in memory only.
        injectPort: identityInject,
        stateInMemory: true,
      } satisfies AgentRelease),
    ]);
    process.stderr.write(`[real-node] node, images, control plane and both agent releases in ${Date.now() - started} ms\n`);
  }, 900_000); // a first run builds the images (a few minutes)

  afterAll(async () => {
    await cp?.stop();
    await node?.stop();
  }, 120_000);

  it('helm install with a bootstrap token: the agent pod becomes Ready under exactly the chart’s RBAC', async () => {
    const [pod] = await cluster.deploymentReady(token.namespace, token.release);
    const enrolled = (await cluster.log(token.namespace, pod!.metadata!.name!)).split('\n').find((l) => l.includes('"msg":"enrolled"'));
    expect(enrolled).toContain('"via":"bootstrap-token"');
    expect((await api().get(`/clusters/${token.cluster}`)).body.state).toBe('enrolled');
    // Its service account is bound to the chart's two Roles and nothing else.
    const bindings = [
      ...(await cluster.rbac.listRoleBindingForAllNamespaces()).items,
      ...(await cluster.rbac.listClusterRoleBinding()).items,
    ]
      .filter((b) => b.subjects?.some((s) => s.kind === 'ServiceAccount' && s.namespace === token.namespace && s.name === 'sigil-agent'))
      .map((b) => `${b.metadata?.namespace ?? ''}/${b.metadata?.name} → ${b.roleRef.kind}/${b.roleRef.name}`)
      .sort();
    expect(bindings).toEqual([
      `${served}/${token.release}-secrets → Role/${token.release}-secrets`,
      `${token.namespace}/${token.release}-state → Role/${token.release}-state`,
    ]);
  }, 180_000);

  it('helm install with the Kubernetes service-account identity: enrolls with a projected token, no shared secret', async () => {
    const [pod] = await cluster.deploymentReady(identity.namespace, identity.release);
    const enrolled = (await cluster.log(identity.namespace, pod!.metadata!.name!)).split('\n').find((l) => l.includes('"msg":"enrolled"'));
    expect(enrolled).toContain('"via":"service-account-token"');
    expect((await api().get(`/clusters/${identity.cluster}`)).body.state).toBe('enrolled');
    const volumes = pod!.spec!.volumes!.map((v) => v.name);
    expect(volumes).toContain('identity');
    expect(volumes).not.toContain('enrollment');
  }, 180_000);

  it('the agent runs as 65532 on a read-only root filesystem, within its memory target at idle', () => {
    const pid = agentProcess(token.cluster);
    expect(readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(/^Uid:\s+65532\s/m);
    const root = readFileSync(`/proc/${pid}/mountinfo`, 'utf8')
      .split('\n')
      .find((l) => l.split(' ')[4] === '/');
    expect(root?.split(' ')[5]?.split(',')).toContain('ro');
    const rssMiB = Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
    process.stderr.write(`[real-node] agent idle RSS ${rssMiB.toFixed(1)} MiB\n`);
    expect(rssMiB).toBeLessThan(AGENT_TARGET_RSS_MIB);
  });

  it('publish: a Deployment with envFrom and a pod with the in-memory volume see the values', async () => {
    await api().post(`/projects/${project}/apps/web/publish`, { clusters: [token.cluster] });
    await api().post(`/projects/${project}/apps/files/publish`, { clusters: [token.cluster] });
    await eventually('provisioned', async () =>
      (await publication('web')).summary.provisioned === 1 && (await publication('files')).summary.provisioned === 1 ? true : undefined,
    );
    // The pod specs are the fragments the API renders for each app.
    const envSpec = (await api().get(`/projects/${project}/apps/web/pod-spec`)).body.podSpec;
    const volumeSpec = (await api().get(`/projects/${project}/apps/files/pod-spec`)).body.podSpec;
    const web = busyboxPod('web', 'echo "PASSWORD=$PASSWORD"; exec sleep 3600', {}, { envFrom: envSpec.containers[0].envFrom });
    await cluster.apps.createNamespacedDeployment({
      namespace: served,
      body: {
        metadata: { name: 'web', annotations: { 'sigil.dev/restart-on-change': 'true' } },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: 'web' } },
          template: { metadata: { labels: { app: 'web' } }, spec: { ...web.spec!, restartPolicy: 'Always' } },
        },
      },
    });
    const files = busyboxPod(
      'files',
      'cat /etc/sigil/files-tls/key.pem; echo; grep " /etc/sigil/files-tls " /proc/mounts',
      { volumes: volumeSpec.volumes },
      {
        volumeMounts: volumeSpec.containers[0].volumeMounts,
      },
    );
    const [filesLog, [webPod]] = await Promise.all([cluster.runToCompletion(served, files), cluster.deploymentReady(served, 'web')]);
    expect(filesLog).toContain('node-file-canary-v1');
    expect(filesLog).toMatch(/^tmpfs \/etc\/sigil\/files-tls tmpfs/m); // in memory, never on the node's disk
    expect(await cluster.log(served, webPod!.metadata!.name!)).toContain('PASSWORD=node-canary-v1');
  }, 180_000);

  it('rotate: the opt-in restart rolls the Deployment and its new pod sees the new value', async () => {
    const before = (await cluster.deploymentReady(served, 'web'))[0]!.metadata!.name!;
    await api().put(`/projects/${project}/apps/web/secrets/web-db`, { data: { PASSWORD: 'node-canary-v2' } });
    const after = await eventually(
      'rolled',
      async () => {
        const pods = await cluster.deploymentReady(served, 'web', 5_000).catch(() => []);
        return pods.length === 1 && pods[0]!.metadata!.name !== before ? pods[0]! : undefined;
      },
      120_000,
    );
    const d = await cluster.apps.readNamespacedDeployment({ namespace: served, name: 'web' });
    expect(Object.keys(d.spec!.template.metadata!.annotations ?? {}).some((k) => k.startsWith('sigil.dev/'))).toBe(true);
    expect(await cluster.log(served, after.metadata!.name!)).toContain('PASSWORD=node-canary-v2');
    // Everything so far (writes, watches, the restart's patch) within the chart's RBAC.
    const [agentPod] = await cluster.deploymentReady(token.namespace, token.release);
    expect(await cluster.log(token.namespace, agentPod!.metadata!.name!)).not.toMatch(/Kubernetes API 40[13]|Forbidden/);
  }, 180_000);

  it('unpublish: the Secrets are gone from the node', async () => {
    await api().post(`/projects/${project}/apps/web/unpublish`, {});
    await api().post(`/projects/${project}/apps/files/unpublish`, {});
    for (const name of ['web-db', 'files-tls'])
      await eventually(`${name} deleted`, async () =>
        (await cluster.core.readNamespacedSecret({ namespace: served, name }).catch(() => undefined)) ? undefined : true,
      );
    await eventually('deprovisioned', async () => ((await publication('web')).deliveries[0]?.state === 'deprovisioned' ? true : undefined));
    await cluster.apps.deleteNamespacedDeployment({ namespace: served, name: 'web' });
  }, 120_000);

  it('inject: an annotated Deployment starts with the value in its environment and files, a rotation reaches the sidecar file, no Secret holds it', async () => {
    const p = uniqueName('inj');
    const ns = 'reports'; // served by the identity agent, which injects
    expect((await api().post('/projects', { name: p })).status).toBe(201);
    await api().put(`/projects/${p}/cluster-selector`, { selector: {} });
    await api().put(`/projects/${p}/namespaces`, { namespaces: [ns] });
    const app = await api().post(`/projects/${p}/apps`, {
      name: 'pay',
      namespace: ns,
      deliveryMode: 'inject',
      consumers: [{ namespace: ns, serviceAccount: 'pay' }],
    });
    expect(app.status).toBe(201);
    await api().post(`/projects/${p}/apps/pay/secrets`, { name: 'pay-db', data: { PASSWORD: 'node-inject-canary-v1' } });
    await api().post(`/projects/${p}/apps/pay/publish`, { clusters: [identity.cluster] });
    await eventually('provisioned', async () =>
      (await api().get(`/projects/${p}/apps/pay/publication`)).body.summary.provisioned === 1 ? true : undefined,
    );
    await cluster.core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'pay' } } });
    const script =
      'trap "echo RELOADED" HUP; echo "PASSWORD=$PASSWORD"; while true; do echo "FILE=$(cat /sigil/secrets/pay-db/PASSWORD)"; sleep 1; done';
    const pod = busyboxPod('pay', script, { serviceAccountName: 'pay' }, { command: ['/bin/sh'] });
    await cluster.apps.createNamespacedDeployment({
      namespace: ns,
      body: {
        metadata: { name: 'pay' },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: 'pay' } },
          template: {
            metadata: {
              labels: { app: 'pay' },
              annotations: {
                'sigil.dev/inject': 'pay',
                'sigil.dev/inject-env': 'true',
                'sigil.dev/inject-mode': 'sidecar',
                'sigil.dev/inject-signal': 'HUP',
              },
            },
            spec: { ...pod.spec!, restartPolicy: 'Always' },
          },
        },
      },
    });
    const [running] = await cluster.deploymentReady(ns, 'pay', 150_000);
    expect(running!.spec!.initContainers!.map((c) => c.name)).toEqual(['sigil-inject-init', 'sigil-inject-sidecar']);
    const name = running!.metadata!.name!;
    await eventually(
      'values in the pod',
      async () => {
        const log = await cluster.log(ns, name, 'app');
        return log.includes('PASSWORD=node-inject-canary-v1') && log.includes('FILE=node-inject-canary-v1') ? true : undefined;
      },
      30_000,
    );
    const started = Date.now();
    await api().put(`/projects/${p}/apps/pay/secrets/pay-db`, { data: { PASSWORD: 'node-inject-canary-v2' } });
    await eventually(
      'rotation in the file',
      async () => ((await cluster.log(ns, name, 'app')).includes('FILE=node-inject-canary-v2') ? true : undefined),
      60_000,
    );
    process.stderr.write(`[real-node] injection: rotation reached the running pod's file in ${Date.now() - started} ms (1 s read loop)\n`);
    // The sidecar signalled the app (its trap ran); the environment stays fixed for the process.
    await eventually('app signalled', async () => ((await cluster.log(ns, name, 'app')).includes('RELOADED') ? true : undefined), 15_000);
    expect(await cluster.log(ns, name, 'app')).not.toContain('PASSWORD=node-inject-canary-v2');
    for (const s of (await cluster.core.listSecretForAllNamespaces()).items)
      for (const v of Object.values(s.data ?? {})) expect(Buffer.from(v, 'base64').toString()).not.toMatch(/node-inject-canary/);
    await eventually('grant at the centre', async () =>
      ((await api().get(`/projects/${p}/apps/pay/consumption`)).body.items as Array<{ namespace: string; serviceAccount: string }>).some(
        (i) => i.namespace === ns && i.serviceAccount === 'pay',
      )
        ? true
        : undefined,
    );
    await cluster.apps.deleteNamespacedDeployment({ namespace: ns, name: 'pay' });
  }, 300_000);

  it('a deleted agent pod stops on SIGTERM, and its replacement resumes from the state Secret without enrolling again', async () => {
    // The one-time token is spent; deleting it proves the replacement cannot enroll again.
    await cluster.core.deleteNamespacedSecret({ namespace: token.namespace, name: 'sigil-enrollment-token' });
    const [old] = await cluster.deploymentReady(token.namespace, token.release);
    const oldPid = agentProcess(token.cluster);
    const started = Date.now();
    await cluster.core.deleteNamespacedPod({ namespace: token.namespace, name: old!.metadata!.name! });
    await eventually('old agent exited', () => Promise.resolve(processAlive(oldPid) ? undefined : true), 60_000);
    const stoppedMs = Date.now() - started;
    expect(stoppedMs).toBeLessThan(15_000); // the grace period is 30 s: Node as PID 1 handled SIGTERM
    const [replacement] = await cluster.deploymentReady(token.namespace, token.release);
    expect(replacement!.metadata!.name).not.toBe(old!.metadata!.name);
    const log = await cluster.log(token.namespace, replacement!.metadata!.name!);
    expect(log).toContain('using the stored enrollment');
    expect(log).not.toContain('"msg":"enrolled"');
    // And it still delivers.
    await api().post(`/projects/${project}/apps/web/publish`, { clusters: [token.cluster] });
    const secret = await eventually('Secret written again', () => cluster.core.readNamespacedSecret({ namespace: served, name: 'web-db' }));
    expect(Buffer.from(secret.data!.PASSWORD!, 'base64').toString()).toBe('node-canary-v2');
  }, 180_000);

  it('the control-plane chart installs on the node (PostgreSQL and Redis outside it, SoftHSM), becomes Ready, serves an agent and stops on SIGTERM', async () => {
    expect(await controlPlaneImage).toBeUndefined();
    const db = await createTestDatabase();
    const [httpPort, grpcPort, metricsPort] = [await freeLoopbackPort(), await freeLoopbackPort(), await freeLoopbackPort()];
    const redisPrefix = uniqueName('n').replace(/-/g, '');
    try {
      await cluster.installControlPlane({
        release: 'sigil',
        namespace: 'sigil',
        databaseUrl: db.url,
        redisUrl: testEnv().redis.url,
        redisPrefix,
        adminToken: ADMIN_TOKEN,
        httpPort,
        grpcPort,
      });
      const [pod] = await cluster.deploymentReady('sigil', 'sigil', 180_000);
      expect(podReady(pod!)).toBe(true);
      const inNode = new ApiClient(`http://127.0.0.1:${httpPort}`, ADMIN_TOKEN);
      const p = uniqueName('in');
      await inNode.post('/projects', { name: p });
      await inNode.put(`/projects/${p}/cluster-selector`, { selector: {} });
      await inNode.put(`/projects/${p}/namespaces`, { namespaces: ['inside'] });
      await inNode.post(`/projects/${p}/apps`, { name: 'hello', namespace: 'inside', deliveryMode: 'env' });
      await inNode.post(`/projects/${p}/apps/hello/secrets`, { name: 'hello', data: { GREETING: 'from-the-in-node-control-plane' } });
      const name = uniqueName('in');
      expect((await inNode.post('/clusters', { name })).status).toBe(201);
      await cluster.installAgent({
        release: 'agent-inside',
        namespace: 'sigil-inside',
        cluster: name,
        controlPlane: `localhost:${grpcPort}`,
        caPem: (await inNode.get('/agents/trust')).body.caCertificatePem,
        enrollment: { mode: 'token', token: (await inNode.post(`/clusters/${name}/enrollment-tokens`)).body.token },
        namespaces: ['inside'],
        metricsPort,
      });
      await cluster.deploymentReady('sigil-inside', 'agent-inside');
      await inNode.post(`/projects/${p}/apps/hello/publish`, { clusters: [name] });
      await eventually('Secret delivered', () => cluster.core.readNamespacedSecret({ namespace: 'inside', name: 'hello' }));
      const out = await cluster.runToCompletion(
        'inside',
        busyboxPod('hello', 'echo "GREETING=$GREETING"', {}, { envFrom: [{ secretRef: { name: 'hello' } }] }),
      );
      expect(out).toContain('GREETING=from-the-in-node-control-plane');
      // Nothing of the value in the control plane's own log.
      expect(await cluster.log('sigil', pod!.metadata!.name!)).not.toContain('from-the-in-node-control-plane');
      // Its Node process is PID 1 of the container and stops on SIGTERM, well within the grace period.
      const pid = findProcess('dist/apps/control-plane/src/main.js', (p) => readFileSync(`/proc/${p}/cgroup`, 'utf8').includes('kubepods'));
      const deleted = Date.now();
      await cluster.core.deleteNamespacedPod({ namespace: 'sigil', name: pod!.metadata!.name! });
      await eventually('control plane exited', () => Promise.resolve(processAlive(pid) ? undefined : true), 60_000);
      expect(Date.now() - deleted).toBeLessThan(15_000);
    } finally {
      await cluster.helm('uninstall', 'sigil', '-n', 'sigil', '--wait').catch(() => undefined);
      await db.drop();
    }
  }, 300_000);
});

describe('a real node whose process is killed', () => {
  it('is cleaned up by its watcher: no process, mount, cgroup, directory or kernel setting left behind', async () => {
    const sysctls = ['/proc/sys/vm/overcommit_memory', '/proc/sys/kernel/panic', '/proc/sys/kernel/panic_on_oops'];
    const before = { sysctls: sysctls.map((f) => readFileSync(f, 'utf8')), fixed: FIXED_PATHS.filter((p) => existsSync(p)) };
    const probe = spawn(process.execPath, [path.join(REPO_ROOT, 'dist/tests/harness/real-node-probe.js')], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    probe.stderr.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-4000)));
    const [line] = (await Promise.race([
      once(probe.stdout, 'data'),
      once(probe, 'exit').then(() => Promise.reject(new Error(`the probe exited: ${err}`))),
    ])) as [Buffer];
    const dir = /^ready (\S+)/.exec(line.toString())![1]!;
    // The node really holds something of the machine: mounts (the pod's volumes) and its cgroups.
    expect(mountsUnder(dir).length).toBeGreaterThan(0);
    expect(existsSync('/sys/fs/cgroup/memory/kubepods')).toBe(true);
    probe.kill('SIGKILL');
    await eventually(
      'node cleaned up',
      () =>
        Promise.resolve(
          !existsSync(path.join(dir, 'owner')) && mountsUnder(dir).length === 0 && processesNaming(dir).length === 0 ? true : undefined,
        ),
      60_000,
    );
    expect(readdirSync('/sys/fs/cgroup').filter((h) => existsSync(path.join('/sys/fs/cgroup', h, 'kubepods')))).toEqual([]);
    expect(FIXED_PATHS.filter((p) => existsSync(p))).toEqual(before.fixed);
    expect(sysctls.map((f) => readFileSync(f, 'utf8'))).toEqual(before.sysctls);
  }, 180_000);
});

const FIXED_PATHS = ['/var/lib/kubelet', '/var/log/containers', '/run/containerd'];

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(`${dir}/`));
}

function processesNaming(dir: string): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((pid) => {
      try {
        const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        return cmd.includes(`${dir}/`) && !cmd.includes('real-node-cleanup');
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** The host PID of the process with `marker` among its arguments (the kubelet's containers are host processes). */
function findProcess(marker: string, also: (pid: string) => boolean = () => true): number {
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(marker) && also(pid)) return Number(pid);
    } catch {
      // exited meanwhile
    }
  }
  throw new Error(`no process with ${marker}`);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
