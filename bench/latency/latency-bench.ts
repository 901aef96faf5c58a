import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Agent as HttpsAgent, request, type RequestOptions } from 'node:https';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { DELIVERY_QUEUE } from '../../apps/control-plane/src/delivery/delivery-queue.js';
import { redisConnectionOptions } from '../../apps/control-plane/src/redis/redis.module.js';
import { AgentProcess } from '../../tests/harness/agent-process.js';
import type { ApiClient, ApiResponse } from '../../tests/harness/api-client.js';
import { eventually } from '../../tests/harness/eventually.js';
import { startControlPlane, type RunningControlPlane } from '../../tests/harness/running-control-plane.js';
import { startServices, type RunningServices } from '../../tests/harness/services.js';
import { createNamespace, testEnv, uniqueName } from '../../tests/harness/test-env.js';
import { describeMachine, type MachineDescription } from '../lib/machine.js';
import { machineLine, mark, writeResults } from '../lib/results.js';

/**
 * bench/latency: one rotated value reaching one cluster's Kubernetes Secret. A real control-plane
 * process, a real agent process and a real kube-apiserver (the test harness' services), set up
 * as tests/e2e/agent-lifecycle does. Each iteration times from just before the REST request
 * that writes a new value (PUT …/secrets/{s}) to the moment a Kubernetes watch on the Secret,
 * opened once beforehand, shows the new value. Iterations run one after another with a
 * 20–50 ms random pause. The floor, measured in the same run, is a direct kube-apiserver update
 * of a Secret (PUT) until the same watch shows it.
 *
 * Where the time goes comes from probes that change nothing in the product: BullMQ's queue
 * events (the job added when the request commits, and picked up by a worker) and the Redis
 * `desired` cluster event (snapshot built, agent's stream pushed), received by this process.
 *
 *   make bench-latency        # BENCH_LATENCY_ITERATIONS=200 by default
 */
const ITERATIONS = Number(process.env.BENCH_LATENCY_ITERATIONS ?? 200);
const WARMUP = 20;
const FLOOR_ITERATIONS = 40;
const PAUSE_MS = [20, 50] as const;
const ITERATION_TIMEOUT_MS = 15_000;
const TARGET = { p50: 100, p99: 300 };
const SECRET = 'latency-probe';
const FLOOR_SECRET = 'latency-floor';
const KEY = 'VALUE';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pause = () => sleep(PAUSE_MS[0] + Math.random() * (PAUSE_MS[1] - PAUSE_MS[0]));
const uniqueValue = (tag: string) => `${tag}-${randomBytes(8).toString('hex')}`;

interface Stats {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentiles, in ms rounded to 0.1. */
function stats(samples: number[]): Stats {
  if (samples.length === 0) throw new Error('no samples');
  const s = [...samples].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
  const r = (x: number) => Math.round(x * 10) / 10;
  return {
    n: s.length,
    p50: r(at(50)),
    p90: r(at(90)),
    p99: r(at(99)),
    max: r(s[s.length - 1]!),
    mean: r(s.reduce((a, b) => a + b, 0) / s.length),
  };
}

/**
 * One Kubernetes watch on the Secrets of a namespace (raw HTTPS, opened once): resolves a waiter
 * the moment an event shows a Secret holding the expected value under KEY.
 */
class SecretWatch {
  private readonly waiters = new Map<string, (at: number) => void>();
  private readonly latest = new Map<string, { resourceVersion: string; value: string | undefined }>();
  private readonly ctl = new AbortController();
  private failure: Error | undefined;
  private readonly onFailure = new Set<(err: Error) => void>();

  private constructor(private readonly kube: KubeHttp) {}

  static open(kube: KubeHttp, namespace: string): SecretWatch {
    const w = new SecretWatch(kube);
    w.run(`/api/v1/namespaces/${namespace}/secrets?watch=1&allowWatchBookmarks=true`);
    return w;
  }

  private run(apiPath: string): void {
    const req = request(`${this.kube.server}${apiPath}`, { ...this.kube.options('GET'), signal: this.ctl.signal }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        this.fail(new Error(`Kubernetes watch ${apiPath} answered ${res.statusCode}`));
        return;
      }
      let buffered = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        const at = performance.now();
        buffered += chunk;
        let nl;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (line) this.onEvent(JSON.parse(line) as WatchEvent, at);
        }
      });
      res.on('end', () => this.fail(new Error('the Kubernetes watch ended')));
      res.on('error', (err) => this.fail(err));
    });
    req.on('error', (err) => this.fail(err));
    req.end();
  }

  private onEvent(e: WatchEvent, at: number): void {
    if (e.type !== 'ADDED' && e.type !== 'MODIFIED') return;
    const name = e.object.metadata?.name ?? '';
    const raw = e.object.data?.[KEY];
    const value = raw === undefined ? undefined : Buffer.from(raw, 'base64').toString('utf8');
    this.latest.set(name, { resourceVersion: e.object.metadata?.resourceVersion ?? '', value });
    const k = `${name}\0${value}`;
    const resolve = this.waiters.get(k);
    if (resolve) {
      this.waiters.delete(k);
      resolve(at);
    }
  }

  private fail(err: Error): void {
    if (this.ctl.signal.aborted || this.failure) return;
    this.failure = err;
    for (const f of this.onFailure) f(err);
  }

  /** Registers interest in `name` holding `value` (before causing it); resolves with performance.now() of the event. */
  expect(name: string, value: string, timeoutMs = ITERATION_TIMEOUT_MS): Promise<number> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.latest.get(name)?.value === value) return Promise.resolve(performance.now());
    const k = `${name}\0${value}`;
    const seen = new Promise<number>((resolve, reject) => {
      const onFail = (err: Error) => done(() => reject(err));
      const timer = setTimeout(
        () => done(() => reject(new Error(`Secret ${name} did not show the new value within ${timeoutMs} ms`))),
        timeoutMs,
      ).unref();
      const done = (settle: () => void) => {
        clearTimeout(timer);
        this.waiters.delete(k);
        this.onFailure.delete(onFail);
        settle();
      };
      this.onFailure.add(onFail);
      this.waiters.set(k, (at) => done(() => resolve(at)));
    });
    // A caller that fails before awaiting (its request failed) must not leave an unhandled rejection.
    seen.catch(() => undefined);
    return seen;
  }

  value(name: string): string | undefined {
    return this.latest.get(name)?.value;
  }

  close(): void {
    this.ctl.abort();
  }
}

interface WatchEvent {
  type: string;
  object: { metadata?: { name?: string; resourceVersion?: string }; data?: Record<string, string> };
}

/** The harness' kube-apiserver over HTTPS with its admin token, on a keep-alive connection. */
class KubeHttp {
  readonly server: string;
  private readonly ca: Buffer;
  private readonly token: string;
  private readonly agent = new HttpsAgent({ keepAlive: true, maxSockets: 4 });

  constructor() {
    const kube = testEnv().kube;
    this.server = kube.server;
    this.ca = readFileSync(kube.caFile);
    this.token = kube.adminToken;
  }

  options(method: string, headers: Record<string, string> = {}): RequestOptions {
    return {
      method,
      ca: this.ca,
      agent: this.agent,
      headers: { accept: 'application/json', authorization: `Bearer ${this.token}`, ...headers },
    };
  }

  json<T>(method: string, apiPath: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {};
    return new Promise<T>((resolve, reject) => {
      const req = request(`${this.server}${apiPath}`, this.options(method, headers), (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if ((res.statusCode ?? 0) >= 300) reject(new Error(`Kubernetes ${method} ${apiPath}: ${res.statusCode} ${text.slice(0, 300)}`));
          else resolve(JSON.parse(text) as T);
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(payload);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** Fails with the response when a REST call did not answer `expected`. */
function ok<T>(what: string, res: ApiResponse<T>, expected: number): T {
  if (res.status !== expected) throw new Error(`${what}: HTTP ${res.status} (expected ${expected}): ${res.text.slice(0, 500)}`);
  return res.body;
}

/** Milestones of one rotation, in ms after the REST request was sent (probes in Redis). */
interface Probe {
  added?: number;
  active?: number;
  built?: number;
}

interface Sample {
  total: number;
  rest: number;
  probe: Probe;
}

/** Listens to the delivery queue and the cluster events of one cluster; stamps the current rotation's milestones. */
class DeliveryProbes {
  current: { t0: number; probe: Probe } | undefined;
  private constructor(
    private readonly sub: Redis,
    private readonly queueEvents: QueueEvents,
  ) {}

  static async open(redisUrl: string, prefix: string, clusterId: string): Promise<DeliveryProbes> {
    const sub = new Redis(redisUrl, { maxRetriesPerRequest: null, lazyConnect: true });
    sub.on('error', () => undefined);
    await sub.connect();
    await sub.subscribe(`${prefix}:cluster-events`);
    const queueEvents = new QueueEvents(DELIVERY_QUEUE, { connection: redisConnectionOptions(redisUrl), prefix });
    queueEvents.on('error', () => undefined);
    await queueEvents.waitUntilReady();
    const probes = new DeliveryProbes(sub, queueEvents);
    // This bench's control plane (own database and Redis prefix) has one cluster, so every job
    // of its delivery queue is that cluster's, whether jobs are per cluster or batches.
    const stamp = (field: keyof Probe) => {
      const c = probes.current;
      if (c && c.probe[field] === undefined) c.probe[field] = performance.now() - c.t0;
    };
    queueEvents.on('added', () => stamp('added'));
    queueEvents.on('active', () => stamp('active'));
    sub.on('message', (_channel: string, raw: string) => {
      const e = JSON.parse(raw) as { type?: string; clusterIds?: string[] };
      if (e.type === 'desired' && e.clusterIds?.includes(clusterId)) stamp('built');
    });
    return probes;
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.queueEvents.close(), this.sub.quit()]);
  }
}

/** One rotation through the REST API; returns its timings once the watch shows the new value. */
async function rotate(api: ApiClient, secretPath: string, watch: SecretWatch, probes: DeliveryProbes): Promise<Sample> {
  const value = uniqueValue('rotated');
  const seen = watch.expect(SECRET, value);
  const probe: Probe = {};
  const t0 = performance.now();
  probes.current = { t0, probe };
  const res = await api.put(secretPath, { data: { [KEY]: value } });
  const rest = performance.now() - t0;
  ok('rotate', res, 200);
  const at = await seen;
  probes.current = undefined;
  return { total: at - t0, rest, probe };
}

/** The floor: the same watch seeing a Secret this process updates directly in the kube-apiserver. */
async function floorUpdate(kube: KubeHttp, namespace: string, watch: SecretWatch): Promise<{ total: number; put: number }> {
  const value = uniqueValue('floor');
  const seen = watch.expect(FLOOR_SECRET, value);
  const t0 = performance.now();
  await kube.json('PUT', `/api/v1/namespaces/${namespace}/secrets/${FLOOR_SECRET}`, {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: FLOOR_SECRET, namespace },
    data: { [KEY]: Buffer.from(value).toString('base64') },
  });
  const put = performance.now() - t0;
  return { total: (await seen) - t0, put };
}

interface Results {
  machine: MachineDescription;
  /** 1-minute load average before and after the measurement: other work on the machine shows here. */
  loadAverage: { before: number; after: number };
  iterations: number;
  warmup: number;
  pauseMs: readonly [number, number];
  targets: typeof TARGET;
  endToEnd: Stats;
  restOnly: Stats;
  floor: Stats & { putP50: number };
  ratio: number;
  stages: Array<{ stage: string; stats: Stats }>;
  milestones: Array<{ milestone: string; stats: Stats }>;
  samples: { endToEnd: number[]; restOnly: number[]; floor: number[] };
}

function render(r: Results): string {
  const f = (x: number) => x.toFixed(1);
  const row = (name: string, s: Stats, target = '') =>
    `| ${name} | ${s.n} | ${f(s.p50)} | ${f(s.p90)} | ${f(s.p99)} | ${f(s.max)} | ${target} |`;
  return [
    `bench/latency — one rotated value → one cluster's Kubernetes Secret (real agent process, real kube-apiserver)`,
    `${machineLine(r.machine)}; ` +
      `${r.iterations} iterations after ${r.warmup} warm-up, ${r.pauseMs[0]}–${r.pauseMs[1]} ms random pause between them; ` +
      `load average ${r.loadAverage.before.toFixed(2)} → ${r.loadAverage.after.toFixed(2)}`,
    '',
    `| measurement | n | p50 ms | p90 ms | p99 ms | max ms | target |`,
    `|---|---|---|---|---|---|---|`,
    row(
      'REST rotate → Kubernetes Secret updated (watch event)',
      r.endToEnd,
      `p50 ≤ ${r.targets.p50} ${mark(r.endToEnd.p50 <= r.targets.p50)}, p99 ≤ ${r.targets.p99} ${mark(r.endToEnd.p99 <= r.targets.p99)}`,
    ),
    row('REST rotate request alone (request → response)', r.restOnly),
    row('floor: direct kube-apiserver PUT → watch event', r.floor),
    '',
    `Sigil p50 / floor p50 = ${f(r.endToEnd.p50)} / ${f(r.floor.p50)} ms = ${r.ratio.toFixed(1)}× ` +
      `(the floor's PUT answers in ${f(r.floor.putP50)} ms at p50)`,
    '',
    `| where the time goes (per rotation) | p50 ms | p90 ms | p99 ms | max ms |`,
    `|---|---|---|---|---|`,
    ...r.stages.map((s) => `| ${s.stage} | ${f(s.stats.p50)} | ${f(s.stats.p90)} | ${f(s.stats.p99)} | ${f(s.stats.max)} |`),
  ].join('\n');
}

async function main(): Promise<void> {
  if (!Number.isInteger(ITERATIONS) || ITERATIONS < 1) throw new Error(`BENCH_LATENCY_ITERATIONS must be a positive integer`);
  const cleanup: Array<() => Promise<unknown> | void> = [];
  let cp: RunningControlPlane | undefined;
  let agent: AgentProcess | undefined;
  let results: Results;
  try {
    const services: RunningServices = await startServices();
    cleanup.push(() => services.stop());
    process.env.SIGIL_TEST_ENV_FILE = services.envFile;

    const kube = new KubeHttp();
    cleanup.push(() => kube.close());
    const namespace = await createNamespace('latency');
    const agentNs = await createNamespace('sigil-agent');
    const watch = SecretWatch.open(kube, namespace);
    cleanup.push(() => watch.close());

    cp = await startControlPlane();
    const running = cp;
    cleanup.push(() => running.stop());
    const api = cp.admin;
    const dir = await mkdtemp(path.join(tmpdir(), 'sigil-bench-latency-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const caFile = path.join(dir, 'ca.pem');
    await writeFile(caFile, ok('trust', await api.get<{ caCertificatePem: string }>('/agents/trust'), 200).caCertificatePem);

    // The same set-up as tests/e2e/agent-lifecycle: project, allowed clusters, app, secret, cluster, token.
    const project = uniqueName('bench');
    const cluster = uniqueName('edge');
    const app = 'checkout';
    ok('create project', await api.post('/projects', { name: project }), 201);
    ok('cluster selector', await api.put(`/projects/${project}/cluster-selector`, { selector: {} }), 204);
    ok('namespaces', await api.put(`/projects/${project}/namespaces`, { namespaces: [namespace] }), 200);
    ok('create app', await api.post(`/projects/${project}/apps`, { name: app, namespace, deliveryMode: 'env' }), 201);
    ok('create secret', await api.post(`/projects/${project}/apps/${app}/secrets`, { name: SECRET, data: { [KEY]: 'initial' } }), 201);
    ok('register cluster', await api.post('/clusters', { name: cluster, labels: { tier: 'bench' } }), 201);
    const token = ok('enrollment token', await api.post<{ token: string }>(`/clusters/${cluster}/enrollment-tokens`), 201).token;
    await writeFile(path.join(dir, 'token'), token, { mode: 0o600 });

    const started = await AgentProcess.start({
      controlPlane: cp.cp.grpcAddress,
      caFile,
      cluster,
      stateSecret: `${agentNs}/sigil-agent-state`,
      namespaces: [namespace],
      enrollmentTokenFile: path.join(dir, 'token'),
    });
    agent = started;
    cleanup.push(() => started.stop());
    await eventually(
      'cluster enrolled',
      async () => ((await api.get<{ state: string }>(`/clusters/${cluster}`)).body.state === 'enrolled' ? true : undefined),
      30_000,
    );
    await eventually('agent ready', async () => ((await fetch(`${started.metricsUrl}/readyz`)).ok ? true : undefined), 30_000);
    const clusterId = ok('cluster', await api.get<{ id: string }>(`/clusters/${cluster}`), 200).id;

    const published = watch.expect(SECRET, 'initial', 30_000);
    ok('publish', await api.post(`/projects/${project}/apps/${app}/publish`, { clusters: [cluster] }), 200);
    await published;
    await eventually(
      'provisioned',
      async () => {
        const p = await api.get<{ summary: { provisioned: number } }>(`/projects/${project}/apps/${app}/publication`);
        return p.body.summary.provisioned === 1 ? true : undefined;
      },
      30_000,
    );

    const probes = await DeliveryProbes.open(testEnv().redis.url, cp.redisPrefix, clusterId);
    cleanup.push(() => probes.close());
    const secretPath = `/projects/${project}/apps/${app}/secrets/${SECRET}`;
    process.stderr.write(`[bench/latency] set up; ${WARMUP} warm-up + ${ITERATIONS} rotations\n`);
    for (let i = 0; i < WARMUP; i++) {
      await rotate(api, secretPath, watch, probes);
      await pause();
    }
    const loadBefore = loadavg()[0]!;
    const samples: Sample[] = [];
    for (let i = 0; i < ITERATIONS; i++) {
      samples.push(await rotate(api, secretPath, watch, probes));
      if ((i + 1) % 50 === 0) process.stderr.write(`[bench/latency] ${i + 1}/${ITERATIONS}\n`);
      await pause();
    }

    // Floor: an unmanaged Secret in the same namespace (the agent only watches its own), same watch.
    const floorSeen = watch.expect(FLOOR_SECRET, 'floor-initial');
    await kube.json('POST', `/api/v1/namespaces/${namespace}/secrets`, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: FLOOR_SECRET, namespace },
      data: { [KEY]: Buffer.from('floor-initial').toString('base64') },
    });
    await floorSeen;
    for (let i = 0; i < WARMUP; i++) {
      await floorUpdate(kube, namespace, watch);
      await pause();
    }
    const floor: Array<{ total: number; put: number }> = [];
    for (let i = 0; i < FLOOR_ITERATIONS; i++) {
      floor.push(await floorUpdate(kube, namespace, watch));
      await pause();
    }
    if (watch.value(SECRET) === undefined) throw new Error('the Sigil-managed Secret vanished during the run');

    const endToEnd = stats(samples.map((s) => s.total));
    const floorStats = stats(floor.map((s) => s.total));
    const probed = samples.filter((s) => s.probe.added !== undefined && s.probe.active !== undefined && s.probe.built !== undefined);
    const diff = (f: (s: Sample, p: Required<Probe>) => number) => stats(probed.map((s) => f(s, s.probe as Required<Probe>)));
    if (probed.length < samples.length)
      process.stderr.write(
        `[bench/latency] ${samples.length - probed.length} rotations missed a probe; stages use the other ${probed.length}\n`,
      );
    results = {
      machine: describeMachine(),
      loadAverage: { before: loadBefore, after: loadavg()[0]! },
      iterations: ITERATIONS,
      warmup: WARMUP,
      pauseMs: PAUSE_MS,
      targets: TARGET,
      endToEnd,
      restOnly: stats(samples.map((s) => s.rest)),
      floor: { ...floorStats, putP50: stats(floor.map((s) => s.put)).p50 },
      ratio: endToEnd.p50 / floorStats.p50,
      stages: probed.length
        ? [
            { stage: 'REST: HTTP, auth, HSM seal, PostgreSQL commit → delivery job added', stats: diff((_s, p) => p.added) },
            { stage: 'queue: job added → picked up by a worker', stats: diff((_s, p) => p.active - p.added) },
            { stage: 'build: HSM wrap, snapshot, generation → agent stream pushed', stats: diff((_s, p) => p.built - p.active) },
            {
              stage: 'agent: state on the Sync stream → decrypt, kube GET + PUT → watch event',
              stats: diff((s, p) => s.total - p.built),
            },
            { stage: '(REST response after the job was added)', stats: diff((s, p) => s.rest - p.added) },
          ]
        : [],
      milestones: probed.length
        ? [
            { milestone: 'delivery job added', stats: diff((_s, p) => p.added) },
            { milestone: 'REST response', stats: stats(probed.map((s) => s.rest)) },
            { milestone: 'job picked up by a worker', stats: diff((_s, p) => p.active) },
            { milestone: 'snapshot built, agent notified', stats: diff((_s, p) => p.built) },
            { milestone: 'Kubernetes Secret updated (watch)', stats: stats(probed.map((s) => s.total)) },
          ]
        : [],
      samples: {
        endToEnd: samples.map((s) => Math.round(s.total * 100) / 100),
        restOnly: samples.map((s) => Math.round(s.rest * 100) / 100),
        floor: floor.map((s) => Math.round(s.total * 100) / 100),
      },
    };
  } catch (err) {
    if (agent) process.stderr.write(`\n[bench/latency] agent log (tail):\n${agent.logs().slice(-3000)}\n`);
    if (cp) process.stderr.write(`\n[bench/latency] control-plane log (tail):\n${cp.cp.logs().slice(-3000)}\n`);
    throw err;
  } finally {
    for (const c of cleanup.reverse()) {
      try {
        await c();
      } catch (err) {
        process.stderr.write(`[bench/latency] clean-up step failed: ${(err as Error).message}\n`);
      }
    }
  }

  const table = render(results);
  process.stdout.write(`\n${table}\n`);
  await writeResults('latency', results, table);
  const missed = [
    results.endToEnd.p50 > TARGET.p50 ? `p50 ${results.endToEnd.p50} ms > ${TARGET.p50} ms` : '',
    results.endToEnd.p99 > TARGET.p99 ? `p99 ${results.endToEnd.p99} ms > ${TARGET.p99} ms` : '',
  ].filter(Boolean);
  if (missed.length) {
    process.stderr.write(`bench/latency: target missed: ${missed.join(', ')}\n`);
    process.exitCode = 1;
  }
}

try {
  await main();
} catch (err) {
  process.stderr.write(`\nbench/latency failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
}
