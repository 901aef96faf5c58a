import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import type { CoreV1Api } from '@kubernetes/client-node';
import type { AgentProcess } from '../../tests/harness/agent-process.js';
import type { ApiClient } from '../../tests/harness/api-client.js';
import { startControlPlane, type RunningControlPlane } from '../../tests/harness/running-control-plane.js';
import { startServices, type RunningServices } from '../../tests/harness/services.js';
import { createNamespace, kubeConfig, testEnv } from '../../tests/harness/test-env.js';
import { writeResults } from '../lib/results.js';
import { DeliveryProbes } from './delivery-probes.js';
import { render, summarize, type Probe, type Results, type Sample } from './latency-report.js';
import { ok, publishToAgent } from './rotation-target.js';
import { SecretWatch } from './secret-watch.js';

/**
 * bench/latency: one rotated value reaching one cluster's Kubernetes Secret. A real control-plane
 * process, a real agent process and a real kube-apiserver (the test harness' services), set up
 * as tests/e2e/agent-lifecycle does. Each iteration times from just before the REST request
 * that writes a new value (PUT …/secrets/{s}) to the moment a Kubernetes watch on the Secret,
 * opened once beforehand, shows the new value. Iterations run one after another with a
 * 20–50 ms random pause. The floor, measured in the same run, is a direct kube-apiserver update
 * of a Secret (PUT) until the same watch shows it. The Kubernetes side (watch, floor updates)
 * goes through @kubernetes/client-node, as the tests do; where the time goes: delivery-probes.ts.
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

/** One rotation through the REST API; returns its timings once the watch shows the new value. */
async function rotate(api: ApiClient, secretPath: string, watch: SecretWatch, probes: DeliveryProbes): Promise<Sample> {
  const value = uniqueValue('rotated');
  const seen = watch.expect(SECRET, value, ITERATION_TIMEOUT_MS);
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

/** The floor's Secret: unmanaged, in the same namespace (the agent only touches its own), same watch. */
const floorSecret = (namespace: string, value: string) => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: FLOOR_SECRET, namespace },
  data: { [KEY]: Buffer.from(value).toString('base64') },
});

/** The floor: the same watch seeing a Secret this process updates directly in the kube-apiserver. */
async function floorUpdate(core: CoreV1Api, namespace: string, watch: SecretWatch): Promise<{ total: number; put: number }> {
  const value = uniqueValue('floor');
  const seen = watch.expect(FLOOR_SECRET, value, ITERATION_TIMEOUT_MS);
  const t0 = performance.now();
  await core.replaceNamespacedSecret({ name: FLOOR_SECRET, namespace, body: floorSecret(namespace, value) });
  const put = performance.now() - t0;
  return { total: (await seen) - t0, put };
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

    const kc = await kubeConfig();
    const core = kc.makeApiClient((await import('@kubernetes/client-node')).CoreV1Api);
    const namespace = await createNamespace('latency');
    const agentNs = await createNamespace('sigil-agent');
    const watch = await SecretWatch.open(kc, namespace, KEY);
    cleanup.push(() => watch.close());

    cp = await startControlPlane();
    const running = cp;
    cleanup.push(() => running.stop());
    const api = cp.admin;
    const dir = await mkdtemp(path.join(tmpdir(), 'sigil-bench-latency-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));

    const target = await publishToAgent(cp, { namespace, agentNs, dir, secret: SECRET, key: KEY }, watch);
    agent = target.agent;
    cleanup.push(() => target.agent.stop());
    const { clusterId, secretPath } = target;

    const probes = await DeliveryProbes.open(testEnv().redis.url, cp.redisPrefix, clusterId);
    cleanup.push(() => probes.close());
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

    const floorSeen = watch.expect(FLOOR_SECRET, 'floor-initial', ITERATION_TIMEOUT_MS);
    await core.createNamespacedSecret({ namespace, body: floorSecret(namespace, 'floor-initial') });
    await floorSeen;
    for (let i = 0; i < WARMUP; i++) {
      await floorUpdate(core, namespace, watch);
      await pause();
    }
    const floor: Array<{ total: number; put: number }> = [];
    for (let i = 0; i < FLOOR_ITERATIONS; i++) {
      floor.push(await floorUpdate(core, namespace, watch));
      await pause();
    }
    if (watch.value(SECRET) === undefined) throw new Error('the Sigil-managed Secret vanished during the run');

    results = summarize(
      {
        iterations: ITERATIONS,
        warmup: WARMUP,
        pauseMs: PAUSE_MS,
        targets: TARGET,
        loadAverage: { before: loadBefore, after: loadavg()[0]! },
      },
      samples,
      floor,
    );
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
