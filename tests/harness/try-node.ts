// `make try-node`: the whole product on a real single-node cluster on this machine, in a few
// minutes. A kubelet node (real-node.ts), the control-plane chart (PostgreSQL and Redis run
// beside the node, SoftHSM inside the pod), the agent chart enrolled by its Kubernetes
// service-account identity, a sample app published, and a pod that prints its secret.
// Ctrl-C stops everything and leaves nothing behind.
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { EmbeddedPostgres } from '../../apps/control-plane/src/embedded/embedded-postgres.js';
import { EmbeddedRedis } from '../../apps/control-plane/src/embedded/embedded-redis.js';
import { freeLoopbackPort } from '../../apps/control-plane/src/embedded/local-process.js';
import { ApiClient } from './api-client.js';
import { eventually } from './eventually.js';
import { busyboxPod, NodeCluster } from './real-node-charts.js';
import { IMAGE_ARCHIVES, RealNode } from './real-node.js';

const t0 = Date.now();
const step = (what: string) => process.stdout.write(`[${((Date.now() - t0) / 1000).toFixed(0).padStart(3)} s] ${what}\n`);

const dir = await mkdtemp(path.join(tmpdir(), 'sigil-try-'));
await chmod(dir, 0o711); // PostgreSQL's unprivileged server user must be able to enter it
const postgres = new EmbeddedPostgres({ dir: path.join(dir, 'postgres'), database: 'sigil', durable: false });
const redis = new EmbeddedRedis({ dir: path.join(dir, 'redis'), durable: false });
let node: RealNode | undefined;
let stopping = false;

async function stop(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    process.stdout.write('\nstopping the node, PostgreSQL and Redis…\n');
    await node?.stop();
    await Promise.allSettled([postgres.stop(), redis.stop()]);
    await rm(dir, { recursive: true, force: true });
  }
  process.exit(code);
}
process.once('SIGINT', () => void stop(0));
process.once('SIGTERM', () => void stop(0));

try {
  step(
    'starting PostgreSQL and Redis (outside the node) and the node (etcd, kube-apiserver, controller-manager, scheduler, kubelet, containerd)',
  );
  const [databaseUrl, redisUrl, started] = await Promise.all([postgres.start(), redis.start(), RealNode.start()]);
  node = started;
  await node.importImages(['sigil-control-plane', 'sigil-agent', 'sigil-busybox'].map((i) => path.join(IMAGE_ARCHIVES, `${i}.tar`)));
  const cluster = await NodeCluster.connect(node);
  step(`node ${node.info.nodeName} is Ready; images imported`);

  const adminToken = `sgl_try-${randomBytes(24).toString('hex')}`;
  const [httpPort, grpcPort, metricsPort] = [await freeLoopbackPort(), await freeLoopbackPort(), await freeLoopbackPort()];
  step('helm install sigil charts/sigil-control-plane (SoftHSM evaluation mode)');
  await cluster.installControlPlane({
    release: 'sigil',
    namespace: 'sigil',
    databaseUrl,
    redisUrl,
    redisPrefix: 'sigil',
    adminToken,
    httpPort,
    grpcPort,
  });
  await cluster.deploymentReady('sigil', 'sigil', 240_000);
  const api = new ApiClient(`http://127.0.0.1:${httpPort}`, adminToken);
  step(`control plane Ready: REST at ${api.baseUrl}/api/v1 (docs at /api/docs)`);

  await cluster.allowAnonymousIssuerDiscovery();
  await api.post('/projects', { name: 'demo' });
  await api.put('/projects/demo/cluster-selector', { selector: {} });
  await api.put('/projects/demo/namespaces', { namespaces: ['shop'] });
  await api.post('/projects/demo/apps', { name: 'checkout', namespace: 'shop', deliveryMode: 'env' });
  await api.post('/projects/demo/apps/checkout/secrets', { name: 'checkout-db', data: { PASSWORD: 'hunter2-from-sigil' } });
  await api.post('/clusters', { name: 'try-node', kubernetesIdentity: cluster.kubernetesIdentity('sigil-agent') });
  step('project demo, app checkout, secret checkout-db; cluster try-node registered with its service-account issuer');

  step('helm install sigil-agent charts/sigil-agent (enrollment: Kubernetes service-account identity, no shared secret)');
  await cluster.installAgent({
    release: 'sigil-agent',
    namespace: 'sigil-agent',
    cluster: 'try-node',
    controlPlane: `localhost:${grpcPort}`,
    caPem: (await api.get('/agents/trust')).body.caCertificatePem,
    enrollment: { mode: 'kubernetesIdentity' },
    namespaces: ['shop'],
    metricsPort,
  });
  await cluster.deploymentReady('sigil-agent', 'sigil-agent');
  step('agent Ready and enrolled');

  await api.post('/projects/demo/apps/checkout/publish', { clusters: ['try-node'] });
  await eventually('published', () => cluster.core.readNamespacedSecret({ namespace: 'shop', name: 'checkout-db' }), 60_000);
  step('published checkout to try-node: Secret shop/checkout-db written by the agent');

  const podSpec = (await api.get('/projects/demo/apps/checkout/pod-spec')).body.podSpec;
  const log = await cluster.runToCompletion(
    'shop',
    busyboxPod('checkout', 'echo "checkout sees PASSWORD=$PASSWORD"', {}, { envFrom: podSpec.containers[0].envFrom }),
  );
  step(`pod shop/checkout (envFrom from GET /pod-spec) printed:\n\n    ${log.trim()}\n`);
  process.stdout.write(
    [
      'Try it yourself (the node keeps running until Ctrl-C):',
      `  export KUBECONFIG=${node.info.kubeconfig}   # helm works with it; kubectl too if you have one`,
      `  curl -s -H 'Authorization: Bearer ${adminToken}' ${api.baseUrl}/api/v1/projects/demo/apps/checkout/publication`,
      `  curl -s -X PUT -H 'Authorization: Bearer ${adminToken}' -H 'Content-Type: application/json' \\`,
      `       -d '{"data":{"PASSWORD":"rotated"}}' ${api.baseUrl}/api/v1/projects/demo/apps/checkout/secrets/checkout-db`,
      '',
    ].join('\n'),
  );
  await new Promise(() => undefined); // until Ctrl-C
} catch (err) {
  process.stderr.write(`try-node failed: ${err instanceof Error ? err.message : String(err)}\n`);
  await stop(1);
}
