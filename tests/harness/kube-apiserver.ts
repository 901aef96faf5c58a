import type { ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { freeLoopbackPort, spawnService, stopChild, tailOf, waitFor } from '../../apps/control-plane/src/embedded/local-process.js';

/**
 * A real Kubernetes API server backed by etcd, envtest-style: no controller-manager, no
 * kubelet. Authentication is a static admin token; authorisation is RBAC; service-account
 * tokens (TokenRequest) and the issuer's OIDC discovery + JWKS work.
 */
export interface KubeApiServerInfo {
  server: string;
  /** PEM bundle that verifies the API server's serving certificate. */
  caFile: string;
  adminToken: string;
  kubeconfig: string;
  issuer: string;
  /** The service-account signing key (PKCS#8 PEM), to forge tokens a TokenRequest will not make (expired ones). */
  signingKeyFile: string;
}

export function kubeApiServerBinary(): string {
  const bin =
    process.env.SIGIL_KUBE_APISERVER ?? path.join(process.env.SIGIL_CACHE ?? path.join(homedir(), '.cache/sigil'), 'bin/kube-apiserver');
  if (!existsSync(bin)) throw new Error(`kube-apiserver not found at ${bin}; run \`make test\` (it builds it) or set SIGIL_KUBE_APISERVER`);
  return bin;
}

export class KubeApiServer {
  private etcd: ChildProcess | undefined;
  private apiserver: ChildProcess | undefined;

  constructor(private readonly dir: string) {}

  async start(): Promise<KubeApiServerInfo> {
    const dir = this.dir;
    await mkdir(path.join(dir, 'certs'), { recursive: true, mode: 0o700 });
    const [etcdPort, peerPort, port] = [await freeLoopbackPort(), await freeLoopbackPort(), await freeLoopbackPort()];

    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    this.etcd = spawnService(
      'etcd',
      [
        '--name=sigil-test',
        `--data-dir=${path.join(dir, 'etcd')}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-cluster=sigil-test=http://127.0.0.1:${peerPort}`,
        '--log-level=error',
      ],
      {},
    );
    const etcdErr = tailOf(this.etcd);
    await waitFor('etcd', async () => (await fetch(`${etcdUrl}/health`)).ok, { timeoutMs: 30_000, child: this.etcd, describe: etcdErr });

    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    await writeFile(path.join(dir, 'sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    await writeFile(path.join(dir, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
    const adminToken = randomBytes(24).toString('hex');
    await writeFile(path.join(dir, 'tokens.csv'), `${adminToken},sigil-test-admin,sigil-test-admin,"system:masters"\n`, { mode: 0o600 });

    const server = `https://127.0.0.1:${port}`;
    this.apiserver = spawnService(
      kubeApiServerBinary(),
      [
        `--etcd-servers=${etcdUrl}`,
        `--cert-dir=${path.join(dir, 'certs')}`,
        `--secure-port=${port}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        '--service-cluster-ip-range=10.0.0.0/24',
        '--authorization-mode=RBAC',
        `--service-account-issuer=${server}`,
        `--service-account-key-file=${path.join(dir, 'sa.pub')}`,
        `--service-account-signing-key-file=${path.join(dir, 'sa.key')}`,
        `--token-auth-file=${path.join(dir, 'tokens.csv')}`,
        // No controller-manager populates service-account tokens; do not require them for pods.
        '--disable-admission-plugins=ServiceAccount',
        '--allow-privileged=true',
        '--v=0',
      ],
      {},
    );
    const apiErr = tailOf(this.apiserver, 16_384);
    const caFile = path.join(dir, 'certs', 'apiserver.crt');
    await waitFor('kube-apiserver certificate', () => Promise.resolve(existsSync(caFile)), {
      timeoutMs: 60_000,
      child: this.apiserver,
      describe: apiErr,
    });
    const kubeconfig = path.join(dir, 'kubeconfig');
    await writeFile(kubeconfig, kubeconfigYaml(server, await readFile(caFile), adminToken), { mode: 0o600 });
    const k8s = await import('@kubernetes/client-node');
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(kubeconfig);
    const health = new k8s.Health(kc);
    await waitFor('kube-apiserver', () => health.readyz({ signal: AbortSignal.timeout(2000) }), {
      timeoutMs: 90_000,
      child: this.apiserver,
      describe: apiErr,
    });
    return { server, caFile, adminToken, kubeconfig, issuer: server, signingKeyFile: path.join(dir, 'sa.key') };
  }

  async stop(): Promise<void> {
    if (this.apiserver) await stopChild(this.apiserver, 'SIGTERM', 20_000);
    if (this.etcd) await stopChild(this.etcd, 'SIGTERM', 10_000);
  }
}

function kubeconfigYaml(server: string, ca: Buffer, token: string): string {
  return `apiVersion: v1
kind: Config
clusters:
- name: sigil-test
  cluster:
    server: ${server}
    certificate-authority-data: ${ca.toString('base64')}
users:
- name: sigil-test-admin
  user:
    token: ${token}
contexts:
- name: sigil-test
  context: {cluster: sigil-test, user: sigil-test-admin}
current-context: sigil-test
`;
}
