import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type * as k8s from '@kubernetes/client-node';
import { repoRoot } from './repo-root.js';
import type { RealNode } from './real-node.js';

/**
 * What a cluster admin does on the real node, with the repository's own charts and images:
 * `helm install` the agent or the control plane, wait for pods, read pod logs through the API.
 */
const HELM = process.env.SIGIL_HELM ?? path.join(process.env.SIGIL_CACHE ?? path.join(homedir(), '.cache/sigil'), 'bin/helm');
const IMAGE_TAG = process.env.SIGIL_IMAGE_TAG ?? 'dev';
const run = promisify(execFile);

export interface AgentRelease {
  release: string;
  namespace: string;
  cluster: string;
  /** host:port of the control plane's gRPC server, as the agent (host network) dials it. */
  controlPlane: string;
  caPem: string;
  enrollment: { mode: 'token'; token: string } | { mode: 'kubernetesIdentity' };
  /** Namespaces the agent serves. */
  namespaces: string[];
  metricsPort: number;
  restartWorkloads?: boolean;
  /** Injection on this port, reached at https://127.0.0.1:<port> (host network, no Service routing). */
  injectPort?: number;
  /** Keys in memory only (kubernetesIdentity). */
  stateInMemory?: boolean;
}

export interface ControlPlaneRelease {
  release: string;
  namespace: string;
  databaseUrl: string;
  redisUrl: string;
  redisPrefix: string;
  adminToken: string;
  httpPort: number;
  grpcPort: number;
}

export class NodeCluster {
  readonly core: k8s.CoreV1Api;
  readonly apps: k8s.AppsV1Api;
  readonly rbac: k8s.RbacAuthorizationV1Api;

  private constructor(
    readonly node: RealNode,
    lib: typeof k8s,
    kc: k8s.KubeConfig,
  ) {
    this.core = kc.makeApiClient(lib.CoreV1Api);
    this.apps = kc.makeApiClient(lib.AppsV1Api);
    this.rbac = kc.makeApiClient(lib.RbacAuthorizationV1Api);
  }

  static async connect(node: RealNode): Promise<NodeCluster> {
    const lib = await import('@kubernetes/client-node');
    const kc = new lib.KubeConfig();
    kc.loadFromFile(node.info.kubeconfig);
    return new NodeCluster(node, lib, kc);
  }

  async helm(...args: string[]): Promise<string> {
    const { stdout } = await run(HELM, [...args, '--kubeconfig', this.node.info.kubeconfig], { maxBuffer: 8 << 20 });
    return stdout;
  }

  async createNamespace(name: string): Promise<void> {
    await this.core.createNamespace({ body: { metadata: { name } } }).catch(ignoreConflict);
  }

  /** Lets anyone read the service-account issuer's public keys (the Kubernetes-documented binding). */
  async allowAnonymousIssuerDiscovery(): Promise<void> {
    await this.rbac
      .createClusterRoleBinding({
        body: {
          metadata: { name: 'sigil-issuer-discovery' },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:service-account-issuer-discovery' },
          subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'system:unauthenticated' }],
        },
      })
      .catch(ignoreConflict);
  }

  /** The `kubernetesIdentity` a control plane registers for an agent of this node's cluster. */
  kubernetesIdentity(namespace: string, serviceAccount = 'sigil-agent') {
    const { issuer, server, caFile } = this.node.info;
    return {
      issuer,
      jwksUri: `${server}/openid/v1/jwks`,
      caCert: readFileSync(caFile, 'utf8'),
      serviceAccount: { namespace, name: serviceAccount },
      allowPrivateAddresses: true, // the node's API server listens on 127.0.0.1
    };
  }

  /** `helm install` of charts/sigil-agent, in the host network (no pod network on this node). */
  async installAgent(a: AgentRelease): Promise<void> {
    await this.createNamespace(a.namespace);
    for (const ns of a.namespaces) await this.createNamespace(ns);
    if (a.enrollment.mode === 'token') {
      await this.core
        .createNamespacedSecret({
          namespace: a.namespace,
          body: { metadata: { name: 'sigil-enrollment-token' }, stringData: { token: a.enrollment.token } },
        })
        .catch(ignoreConflict);
    }
    const values = {
      cluster: a.cluster,
      controlPlane: { address: a.controlPlane, caBundle: a.caPem },
      enrollment: { mode: a.enrollment.mode },
      namespaces: a.namespaces,
      restartWorkloads: { enabled: a.restartWorkloads ?? false, minIntervalSeconds: 0 },
      image: { repository: 'localhost/sigil-agent', tag: IMAGE_TAG, pullPolicy: 'Never' },
      metrics: { port: a.metricsPort },
      ...(a.injectPort ? { inject: { enabled: true, port: a.injectPort, url: `https://127.0.0.1:${a.injectPort}` } } : {}),
      ...(a.stateInMemory ? { stateInMemory: true } : {}),
      ...this.hostNetworkValues(),
    };
    await this.helm(
      'install',
      a.release,
      path.join(repoRoot(), 'charts/sigil-agent'),
      '-n',
      a.namespace,
      '-f',
      await this.valuesFile(a.release, values),
    );
  }

  /** `helm install` of charts/sigil-control-plane: PostgreSQL and Redis from outside the node, SoftHSM for evaluation. */
  async installControlPlane(c: ControlPlaneRelease): Promise<void> {
    await this.createNamespace(c.namespace);
    const secret = (name: string, key: string, value: string) =>
      this.core
        .createNamespacedSecret({ namespace: c.namespace, body: { metadata: { name }, stringData: { [key]: value } } })
        .catch(ignoreConflict);
    await Promise.all([
      secret('sigil-database', 'url', c.databaseUrl),
      secret('sigil-redis', 'url', c.redisUrl),
      secret('sigil-admin-token', 'token', c.adminToken),
    ]);
    const values = {
      image: { repository: 'localhost/sigil-control-plane', tag: IMAGE_TAG, pullPolicy: 'Never' },
      hsm: { mode: 'softhsm', softhsm: { persistence: { enabled: false } }, poolSize: 2 },
      redis: { prefix: c.redisPrefix },
      grpc: { serverNames: ['localhost', '127.0.0.1'] },
      bootstrapAdminTokenSecret: { name: 'sigil-admin-token', key: 'token' },
      containerPorts: { http: c.httpPort, grpc: c.grpcPort },
      hostNetwork: true,
      // An evaluation install on a small node.
      resources: { requests: { cpu: '50m', memory: '128Mi' }, limits: { memory: '1Gi' } },
    };
    await this.helm(
      'install',
      c.release,
      path.join(repoRoot(), 'charts/sigil-control-plane'),
      '-n',
      c.namespace,
      '-f',
      await this.valuesFile(c.release, values),
    );
  }

  /** Until every pod of the Deployment is Ready and none is left from an older ReplicaSet. */
  async deploymentReady(namespace: string, name: string, timeoutMs = 120_000): Promise<k8s.V1Pod[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const d = await this.apps.readNamespacedDeployment({ namespace, name }).catch(() => undefined);
      const s = d?.status;
      if (
        d &&
        s &&
        (s.observedGeneration ?? 0) >= (d.metadata?.generation ?? 1) &&
        s.updatedReplicas === d.spec?.replicas &&
        s.readyReplicas === d.spec?.replicas &&
        (s.replicas ?? 0) === d.spec?.replicas
      ) {
        const selector = Object.entries(d.spec.selector.matchLabels ?? {})
          .map(([k, v]) => `${k}=${v}`)
          .join(',');
        const pods = (await this.core.listNamespacedPod({ namespace, labelSelector: selector })).items.filter(
          (p) => !p.metadata?.deletionTimestamp,
        );
        if (pods.length === d.spec?.replicas && pods.every(podReady)) return pods;
      }
      if (Date.now() > deadline)
        throw new Error(`Deployment ${namespace}/${name} not ready after ${timeoutMs} ms: ${await this.describe(namespace)}`);
      await sleep(250);
    }
  }

  /** Runs a pod to completion and returns its log (read through the API server, from the kubelet). */
  async runToCompletion(namespace: string, pod: k8s.V1Pod, timeoutMs = 90_000): Promise<string> {
    const name = pod.metadata!.name!;
    await this.core.createNamespacedPod({ namespace, body: pod });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const p = await this.core.readNamespacedPod({ namespace, name });
      if (p.status?.phase === 'Succeeded') return this.log(namespace, name);
      if (p.status?.phase === 'Failed')
        throw new Error(`pod ${namespace}/${name} failed: ${await this.log(namespace, name).catch(String)}`);
      if (Date.now() > deadline)
        throw new Error(`pod ${namespace}/${name} did not finish: ${JSON.stringify(p.status)}\n${this.node.logs()}`);
      await sleep(250);
    }
  }

  async log(namespace: string, name: string, container?: string): Promise<string> {
    return this.core.readNamespacedPodLog({ namespace, name, ...(container ? { container } : {}) });
  }

  /** Pod phases, waiting reasons and the last words of crashed containers in a namespace, to explain a timeout. */
  async describe(namespace: string): Promise<string> {
    const pods = await this.core.listNamespacedPod({ namespace }).catch(() => undefined);
    const tail = (name: string, container: string) =>
      this.core
        .readNamespacedPodLog({ namespace, name, container, previous: true, tailLines: 20 })
        .then((l) => l.slice(-4000))
        .catch((err: unknown) => `(no previous log: ${String(err).slice(0, 200)})`);
    return JSON.stringify(
      await Promise.all(
        (pods?.items ?? []).map(async (p) => ({
          pod: p.metadata?.name,
          phase: p.status?.phase,
          conditions: p.status?.conditions
            ?.filter((c) => c.status !== 'True')
            .map((c) => `${c.type}: ${c.reason ?? ''} ${c.message ?? ''}`),
          containers: await Promise.all(
            (p.status?.containerStatuses ?? []).map(async (c) => ({
              ready: c.ready,
              restarts: c.restartCount,
              state: c.state,
              last: c.lastState,
              ...(c.lastState?.terminated ? { lastLog: await tail(p.metadata!.name!, c.name) } : {}),
            })),
          ),
        })),
      ),
    );
  }

  /** A values file in the node's directory (removed with it). */
  private async valuesFile(release: string, values: unknown): Promise<string> {
    const file = path.join(this.node.info.dir, `values-${release}.yaml`);
    await writeFile(file, JSON.stringify(values), { mode: 0o600 }); // JSON is YAML
    return file;
  }

  /** Host network, and the API server's real address: its service IP is not routed (no kube-proxy). */
  private hostNetworkValues() {
    return {
      hostNetwork: true,
      extraEnv: [
        { name: 'KUBERNETES_SERVICE_HOST', value: this.node.info.apiHost },
        { name: 'KUBERNETES_SERVICE_PORT', value: String(this.node.info.apiPort) },
      ],
    };
  }
}

export function podReady(p: k8s.V1Pod): boolean {
  return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/** A busybox pod in the host network, locked down like the charts' pods, running `script`. */
export function busyboxPod(
  name: string,
  script: string,
  spec: Partial<k8s.V1PodSpec> = {},
  container: Partial<k8s.V1Container> = {},
): k8s.V1Pod {
  return {
    metadata: { name, labels: { app: name } },
    spec: {
      hostNetwork: true,
      restartPolicy: 'Never',
      automountServiceAccountToken: false,
      securityContext: {
        runAsNonRoot: true,
        runAsUser: 65534,
        runAsGroup: 65534,
        fsGroup: 65534,
        seccompProfile: { type: 'RuntimeDefault' },
      },
      ...spec,
      containers: [
        {
          name: 'app',
          image: `localhost/sigil-busybox:${IMAGE_TAG}`,
          imagePullPolicy: 'Never',
          args: ['-c', script],
          securityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
          ...container,
        },
      ],
    },
  };
}

function ignoreConflict(err: unknown): void {
  if ((err as { code?: number }).code !== 409) throw err;
}
