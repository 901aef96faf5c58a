import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { appendFile, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { homedir, hostname, networkInterfaces, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { freeLoopbackPort, tailOf, waitFor } from '../../apps/control-plane/src/embedded/local-process.js';
import { selfSigned, signedBy } from './certificates.js';
import { repoRoot } from './repo-root.js';

/**
 * A real single-node Kubernetes cluster on this machine, for the real-node e2e tests: etcd,
 * kube-apiserver (Node + RBAC authorisation, NodeRestriction, service-account admission),
 * kube-controller-manager, kube-scheduler, a kubelet and containerd with runc. Pods use the
 * host's network (no CNI, no iptables); images come in as archives (`make images`), since no
 * registry is reachable. docs/decisions/015.
 *
 * Everything lives in one directory under the temp dir. What cannot (the kubepods cgroups, two
 * fixed kubelet directories, kernel settings the kubelet changes) is recorded there first, and
 * real-node-cleanup.sh undoes it: on stop(), from a detached watcher when the owning process dies
 * without stopping (a killed test), and at the next start for anything older still.
 */
export interface RealNodeInfo {
  dir: string;
  nodeName: string;
  server: string;
  /** host:port of the API server, for pods in the host network (its service IP is not routed: no kube-proxy). */
  apiHost: string;
  apiPort: number;
  caFile: string;
  adminToken: string;
  kubeconfig: string;
  issuer: string;
}

const CLEANUP = path.join(repoRoot(), 'tests/harness/real-node-cleanup.sh');
const CACHE = process.env.SIGIL_CACHE ?? path.join(homedir(), '.cache/sigil');
const NODE_BINARIES = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubelet'] as const;
const HOST_BINARIES = [
  '/usr/bin/etcd',
  '/usr/bin/containerd',
  '/usr/bin/containerd-shim-runc-v2',
  '/usr/bin/ctr',
  '/usr/sbin/runc',
  'openssl',
];
/** The kubelet sets these unless protectKernelDefaults (which refuses to start when they differ). */
const KUBELET_SYSCTLS = [
  'vm/overcommit_memory',
  'vm/panic_on_oom',
  'kernel/panic',
  'kernel/panic_on_oops',
  'kernel/keys/root_maxkeys',
  'kernel/keys/root_maxbytes',
];
/** Directories the kubelet and containerd's shims create at fixed paths whatever their configuration. */
const KUBELET_FIXED_DIRS = ['/var/lib/kubelet', '/var/log/containers', '/run/containerd'];
export const IMAGE_ARCHIVES = path.join(CACHE, 'images');

export function realNodeBinary(name: (typeof NODE_BINARIES)[number]): string {
  return path.join(CACHE, 'bin', name);
}

const run = promisify(execFile);

export class RealNode {
  private readonly children: ChildProcess[] = [];
  private readonly tails = new Map<string, () => string>();
  private stopped = false;

  private constructor(readonly info: RealNodeInfo) {}

  /** Brings the node up and waits until it is Ready (about 15 s with cached binaries). */
  static async start(): Promise<RealNode> {
    requireBinaries();
    requireRoot();
    await cleanLeftovers();
    const dir = await mkdtemp(path.join(tmpdir(), 'sigil-node-'));
    await writeFile(path.join(dir, 'owner'), String(process.pid));
    // Whatever happens to this process from here on, the watcher cleans up after it.
    spawn('bash', [CLEANUP, '--watch', String(process.pid), dir], { detached: true, stdio: 'ignore' }).unref();
    const node = new RealNode({
      dir,
      nodeName: `sigil-node-${hostname()
        .toLowerCase()
        .replace(/[^a-z0-9-]/g, '-')
        .slice(0, 20)}`,
      server: '',
      apiHost: '127.0.0.1',
      apiPort: 0,
      caFile: '',
      adminToken: '',
      kubeconfig: '',
      issuer: '',
    });
    try {
      await node.recordHostState();
      await node.boot();
      return node;
    } catch (err) {
      await node.stop();
      throw err;
    }
  }

  /** Imports docker-archive image tarballs into the node's containerd (pods use imagePullPolicy: Never). */
  async importImages(archives: string[]): Promise<void> {
    const sock = path.join(this.info.dir, 'containerd/containerd.sock');
    await Promise.all(archives.map((a) => run('ctr', ['--address', sock, '-n', 'k8s.io', 'images', 'import', a], { maxBuffer: 1 << 20 })));
  }

  /** The last lines of each daemon's stderr, to explain a failure. */
  logs(): string {
    return [...this.tails].map(([name, tail]) => `--- ${name}\n${tail().slice(-3000)}`).join('\n');
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // The cleanup script stops the kubelet before the containers it would otherwise restart.
    await run('bash', [CLEANUP, this.info.dir], { maxBuffer: 1 << 20 }).catch((err: unknown) => {
      process.stderr.write(`[real-node] cleanup of ${this.info.dir} failed: ${String(err)}\n`);
    });
  }

  private get dir(): string {
    return this.info.dir;
  }

  private async recordHostState(): Promise<void> {
    const created: string[] = [];
    for (const hierarchy of readdirSync('/sys/fs/cgroup')) {
      const kubepods = path.join('/sys/fs/cgroup', hierarchy, 'kubepods');
      if (existsSync(path.join('/sys/fs/cgroup', hierarchy, 'cgroup.procs')) && !existsSync(kubepods)) created.push(kubepods);
    }
    for (const d of KUBELET_FIXED_DIRS) if (!existsSync(d)) created.push(d);
    await writeFile(path.join(this.dir, 'created'), created.map((p) => `${p}\n`).join(''));
    const sysctls = KUBELET_SYSCTLS.map((k) => `/proc/sys/${k}`)
      .filter((k) => existsSync(k))
      .map((k) => `${k} ${readFileSync(k, 'utf8').trim()}\n`);
    await writeFile(path.join(this.dir, 'sysctl'), sysctls.join(''));
  }

  private async boot(): Promise<void> {
    const dir = this.dir;
    const pki = path.join(dir, 'pki');
    await mkdir(pki, { recursive: true, mode: 0o700 });
    const [etcdPort, peerPort, apiPort, kubeletPort, kubeletHealthPort] = (await Promise.all(
      Array.from({ length: 5 }, () => freeLoopbackPort()),
    )) as [number, number, number, number, number];

    // etcd
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    const etcd = this.daemon('etcd', '/usr/bin/etcd', [
      '--name=sigil-node',
      `--data-dir=${path.join(dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-cluster=sigil-node=http://127.0.0.1:${peerPort}`,
      '--unsafe-no-fsync',
      '--log-level=error',
    ]);

    // Credentials: static tokens for the admin and the node; a client certificate for the API
    // server's calls to the kubelet (logs, exec), which trusts only that CA.
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    await writeFile(path.join(pki, 'sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    await writeFile(path.join(pki, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
    const adminToken = randomBytes(24).toString('hex');
    const nodeToken = randomBytes(24).toString('hex');
    const nodeName = this.info.nodeName;
    await writeFile(
      path.join(pki, 'tokens.csv'),
      `${adminToken},sigil-node-admin,sigil-node-admin,"system:masters"\n${nodeToken},system:node:${nodeName},${nodeName},"system:nodes"\n`,
      { mode: 0o600 },
    );
    await kubeletClientCertificate(pki);

    const server = `https://127.0.0.1:${apiPort}`;
    await waitFor('etcd', async () => (await fetch(`${etcdUrl}/health`)).ok, {
      timeoutMs: 30_000,
      child: etcd,
      describe: () => this.logs(),
    });
    const apiserver = this.daemon('kube-apiserver', realNodeBinary('kube-apiserver'), [
      `--etcd-servers=${etcdUrl}`,
      `--cert-dir=${path.join(pki, 'apiserver')}`,
      `--secure-port=${apiPort}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      '--service-cluster-ip-range=10.0.0.0/24',
      '--authorization-mode=Node,RBAC',
      '--enable-admission-plugins=NodeRestriction',
      `--service-account-issuer=${server}`,
      `--service-account-key-file=${path.join(pki, 'sa.pub')}`,
      `--service-account-signing-key-file=${path.join(pki, 'sa.key')}`,
      `--token-auth-file=${path.join(pki, 'tokens.csv')}`,
      `--kubelet-client-certificate=${path.join(pki, 'kubelet-client.crt')}`,
      `--kubelet-client-key=${path.join(pki, 'kubelet-client.key')}`,
      '--kubelet-preferred-address-types=InternalIP',
      '--allow-privileged=false',
      '--v=0',
    ]);
    const caFile = path.join(pki, 'apiserver', 'apiserver.crt');
    await waitFor('kube-apiserver certificate', () => Promise.resolve(existsSync(caFile)), {
      timeoutMs: 60_000,
      child: apiserver,
      describe: () => this.logs(),
    });
    const ca = await readFile(caFile);
    await waitFor('kube-apiserver', () => readyz(server, ca, adminToken), {
      timeoutMs: 90_000,
      child: apiserver,
      describe: () => this.logs(),
    });
    const kubeconfig = path.join(dir, 'kubeconfig');
    await writeFile(kubeconfig, kubeconfigYaml(server, ca, 'admin', adminToken), { mode: 0o600 });
    const nodeKubeconfig = path.join(pki, 'kubelet.kubeconfig');
    await writeFile(nodeKubeconfig, kubeconfigYaml(server, ca, 'node', nodeToken), { mode: 0o600 });
    Object.assign(this.info, { server, apiPort, caFile, adminToken, kubeconfig, issuer: server });

    // Only the controllers the tests rely on: Deployments, default service accounts, the
    // kube-root-ca.crt ConfigMap that service-account token volumes mount, garbage collection,
    // and node lifecycle (it lifts the not-ready taint the kubelet registers with).
    this.daemon('kube-controller-manager', realNodeBinary('kube-controller-manager'), [
      `--kubeconfig=${kubeconfig}`,
      '--controllers=deployment,replicaset,serviceaccount,root-ca-cert-publisher,garbagecollector,namespace,nodelifecycle',
      `--root-ca-file=${caFile}`,
      '--leader-elect=false',
      '--secure-port=0',
      '--v=0',
    ]);
    this.daemon('kube-scheduler', realNodeBinary('kube-scheduler'), [
      `--kubeconfig=${kubeconfig}`,
      '--leader-elect=false',
      '--secure-port=0',
      '--v=0',
    ]);

    // containerd with the CRI plugin, everything under dir.
    const cd = path.join(dir, 'containerd');
    await mkdir(path.join(dir, 'cni'), { recursive: true });
    // A pod network that is configured but never used: it makes the runtime (and so the node)
    // report network-ready; every pod here uses the host's network, so no plugin ever runs.
    await writeFile(
      path.join(dir, 'cni', '10-unused.conflist'),
      JSON.stringify({ cniVersion: '1.0.0', name: 'sigil-unused', plugins: [{ type: 'sigil-host-network-only' }] }),
    );
    await mkdir(cd, { recursive: true });
    await writeFile(path.join(cd, 'config.toml'), containerdConfig(dir));
    const containerd = this.daemon('containerd', '/usr/bin/containerd', ['--config', path.join(cd, 'config.toml'), '--log-level=warn']);
    const sock = path.join(cd, 'containerd.sock');
    await waitFor('containerd', () => run('ctr', ['--address', sock, 'version']).then(() => true), {
      timeoutMs: 30_000,
      child: containerd,
      describe: () => this.logs(),
    });
    await this.importImages([path.join(IMAGE_ARCHIVES, 'sigil-pause.tar')]);

    // kubelet
    const kd = path.join(dir, 'kubelet');
    await mkdir(path.join(kd, 'pods-logs'), { recursive: true });
    // The kubelet refuses a loopback node IP; the API server reaches it (logs) on this address,
    // where only the API server's client certificate is accepted.
    const nodeIp = hostAddress();
    await writeFile(path.join(kd, 'config.yaml'), kubeletConfig(dir, nodeIp, kubeletPort, kubeletHealthPort, path.join(pki, 'ca.crt')));
    const kubelet = this.daemon('kubelet', realNodeBinary('kubelet'), [
      `--config=${path.join(kd, 'config.yaml')}`,
      `--kubeconfig=${nodeKubeconfig}`,
      `--root-dir=${path.join(kd, 'root')}`,
      `--cert-dir=${path.join(kd, 'pki')}`,
      `--hostname-override=${nodeName}`,
      `--node-ip=${nodeIp}`,
      '--v=0',
    ]);
    await waitFor('the node to be Ready', () => this.nodeReady(), { timeoutMs: 120_000, child: kubelet, describe: () => this.logs() });
  }

  private async nodeReady(): Promise<boolean> {
    const res = await apiGet(this.info, `/api/v1/nodes/${this.info.nodeName}`);
    if (!res) return false;
    const node = JSON.parse(res) as { status?: { conditions?: Array<{ type: string; status: string }> } };
    return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
  }

  /** A daemon in its own process group (recorded, so the cleanup can stop it and its children). */
  private daemon(name: string, command: string, args: string[]): ChildProcess {
    const child = spawn(command, args, {
      detached: true,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: this.dir, LANG: 'C' },
    });
    this.children.push(child);
    this.tails.set(name, tailOf(child, 16_384));
    void appendFile(path.join(this.dir, 'pgids'), `${child.pid}\n`);
    child.unref();
    return child;
  }
}

function requireBinaries(): void {
  const missing = NODE_BINARIES.map(realNodeBinary).filter((b) => !existsSync(b));
  for (const b of HOST_BINARIES) {
    if (b.startsWith('/') ? !existsSync(b) : !onPath(b)) missing.push(b);
  }
  for (const archive of ['sigil-pause', 'sigil-agent', 'sigil-control-plane', 'sigil-busybox']) {
    if (!existsSync(path.join(IMAGE_ARCHIVES, `${archive}.tar`))) missing.push(path.join(IMAGE_ARCHIVES, `${archive}.tar`));
  }
  if (missing.length > 0)
    throw new Error(`the real node needs ${missing.join(', ')}: \`make test\` installs and builds them (make deps images)`);
}

function hostAddress(): string {
  const address = Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
  if (!address) throw new Error('the real node needs a non-loopback IPv4 address for its kubelet');
  return address;
}

function onPath(cmd: string): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => existsSync(path.join(d, cmd)));
}

function requireRoot(): void {
  if (process.getuid?.() !== 0) throw new Error('the real node runs containerd and a kubelet, which need root');
}

/** Cleans up nodes of killed runs, and waits for a live one elsewhere (one kubelet per machine: fixed paths, kubepods). */
async function cleanLeftovers(): Promise<void> {
  execFileSync('bash', [CLEANUP, '--leftovers'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const deadline = Date.now() + 15 * 60_000;
  for (;;) {
    const live = readdirSync(tmpdir())
      .filter((d) => d.startsWith('sigil-node-'))
      .map((d) => path.join(tmpdir(), d, 'owner'))
      .filter((f) => existsSync(f));
    if (live.length === 0) return;
    if (Date.now() > deadline) throw new Error(`another real node is still running (${live.join(', ')})`);
    process.stderr.write(`[real-node] waiting for another test run's node to stop (${live.join(', ')})\n`);
    await sleep(5000);
    execFileSync('bash', [CLEANUP, '--leftovers'], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
}

/** The client certificate kube-apiserver presents to the kubelet, from a CA made for this node. */
async function kubeletClientCertificate(pki: string): Promise<void> {
  const ca = selfSigned('sigil-node-kubelet-client-ca');
  const client = signedBy(ca, 'kube-apiserver-kubelet-client', [], 'system:masters');
  await writeFile(path.join(pki, 'ca.crt'), ca.cert);
  await writeFile(path.join(pki, 'ca.key'), ca.key, { mode: 0o600 });
  await writeFile(path.join(pki, 'kubelet-client.crt'), client.cert);
  await writeFile(path.join(pki, 'kubelet-client.key'), client.key, { mode: 0o600 });
}

function containerdConfig(dir: string): string {
  const cd = path.join(dir, 'containerd');
  return `version = 2
root = "${cd}/root"
state = "${cd}/state"
[grpc]
  address = "${cd}/containerd.sock"
[ttrpc]
  address = "${cd}/containerd.sock.ttrpc"
[debug]
  address = "${cd}/debug.sock"
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "localhost/sigil-pause:dev"
    disable_hugetlb_controller = true
    # root here lacks CAP_SYS_RESOURCE: without this runc fails ("can't get final child's PID from pipe").
    restrict_oom_score_adj = true
    stream_server_address = "127.0.0.1"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "${dir}/cni/bin"
      conf_dir = "${dir}/cni"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          BinaryName = "/usr/sbin/runc"
          Root = "${dir}/runc"
  [plugins."io.containerd.internal.v1.opt"]
    path = "${cd}/opt"
`;
}

function kubeletConfig(dir: string, address: string, port: number, healthPort: number, clientCa: string): string {
  return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://${dir}/containerd/containerd.sock
failSwapOn: false
failCgroupV1: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: ${clientCa}}
authorization: {mode: AlwaysAllow}
address: ${address}
port: ${port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: ${healthPort}
podLogsDir: ${dir}/kubelet/pods-logs
makeIPTablesUtilChains: false
resolvConf: /etc/resolv.conf
registerNode: true
serializeImagePulls: false
evictionHard: {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%"}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
`;
}

async function apiGet(info: Pick<RealNodeInfo, 'server' | 'caFile' | 'adminToken'>, p: string): Promise<string | undefined> {
  const { request } = await import('node:https');
  const ca = readFileSync(info.caFile);
  return new Promise((resolve) => {
    const req = request(`${info.server}${p}`, { ca, headers: { Authorization: `Bearer ${info.adminToken}` }, timeout: 3000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(res.statusCode === 200 ? body : undefined));
    });
    req.on('error', () => resolve(undefined));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

async function readyz(server: string, ca: Buffer, token: string): Promise<boolean> {
  const { request } = await import('node:https');
  return new Promise((resolve) => {
    const req = request(`${server}/readyz`, { ca, headers: { Authorization: `Bearer ${token}` }, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

function kubeconfigYaml(server: string, ca: Buffer, user: string, token: string): string {
  return `apiVersion: v1
kind: Config
clusters:
- name: sigil-node
  cluster:
    server: ${server}
    certificate-authority-data: ${ca.toString('base64')}
users:
- name: ${user}
  user:
    token: ${token}
contexts:
- name: sigil-node
  context: {cluster: sigil-node, user: ${user}}
current-context: sigil-node
`;
}

/**
 * Builds (first run: a few minutes) or refreshes (seconds) the images the node runs, from the
 * repository's Dockerfiles: `make images` (.ci/images.sh). dist/ must be built.
 */
export function ensureImages(): void {
  const started = Date.now();
  execFileSync('bash', [path.join(repoRoot(), '.ci/images.sh'), '--quiet'], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (Date.now() - started > 30_000)
    process.stderr.write(
      `[real-node] images built in ${Math.round((Date.now() - started) / 1000)} s (first run, or the code changed since the last build)\n`,
    );
}
