import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freeLoopbackPort } from '../../apps/control-plane/src/embedded/local-process.js';
import { AgentProcess } from '../../tests/harness/agent-process.js';
import { eventually, holds } from '../../tests/harness/eventually.js';
import { createInjectionWebhook, injectablePod, injectorEnv, podToken, runInjector } from '../../tests/harness/injection.js';
import { startControlPlane, type RunningControlPlane } from '../../tests/harness/running-control-plane.js';
import { startServices } from '../../tests/harness/services.js';
import { createNamespace, kubeConfig, uniqueName } from '../../tests/harness/test-env.js';
import { ok } from '../latency/rotation-target.js';
import { stats, type Stats } from '../latency/latency-stats.js';
import { fmtMs, log, machineLine, table, writeResults } from '../lib/results.js';

/**
 * bench/injection: how long injection takes, on the harness' real kube-apiserver with a real
 * control plane, a real agent (injection on) and the real injector process.
 *
 * - init: from the Pod CREATE (the API server calls the agent's webhook) through the pod-bound
 *   TokenRequest and the injector's run (process start, TokenReview, decrypt, files written) to
 *   the value on disk. Floors in the same run: an unannotated Pod CREATE (no webhook call) and
 *   `node -e 0` (the Node start the injector pays).
 * - sidecar: from the REST write of a new value to the sidecar's file holding it. Floor: the
 *   REST write alone.
 *
 *   make bench-injection       # BENCH_INJECTION_ITERATIONS=40 by default
 */
const ITERATIONS = Number(process.env.BENCH_INJECTION_ITERATIONS ?? 40);
const WARMUP = 5;
const KEY = 'PASSWORD';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const cleanup: Array<() => Promise<unknown> | void> = [];
  let cp: RunningControlPlane | undefined;
  let agent: AgentProcess | undefined;
  try {
    const services = await startServices();
    cleanup.push(() => services.stop());
    process.env.SIGIL_TEST_ENV_FILE = services.envFile;
    const k8s = await import('@kubernetes/client-node');
    const kc = await kubeConfig();
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const admission = kc.makeApiClient(k8s.AdmissionregistrationV1Api);
    const namespace = await createNamespace('inject');
    await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'pay' } } });
    cp = await startControlPlane();
    const running = cp;
    cleanup.push(() => running.stop());
    const api = cp.admin;
    const dir = await mkdtemp(path.join(tmpdir(), 'sigil-bench-inject-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));

    const project = uniqueName('bench');
    const cluster = uniqueName('edge');
    ok('project', await api.post('/projects', { name: project }), 201);
    ok('selector', await api.put(`/projects/${project}/cluster-selector`, { selector: {} }), 204);
    ok('namespaces', await api.put(`/projects/${project}/namespaces`, { namespaces: [namespace] }), 200);
    ok(
      'app',
      await api.post(`/projects/${project}/apps`, {
        name: 'pay',
        namespace,
        deliveryMode: 'inject',
        consumers: [{ namespace, serviceAccount: 'pay' }],
      }),
      201,
    );
    const secretPath = `/projects/${project}/apps/pay/secrets/pay-db`;
    ok('secret', await api.post(`/projects/${project}/apps/pay/secrets`, { name: 'pay-db', data: { [KEY]: 'initial' } }), 201);
    ok('cluster', await api.post('/clusters', { name: cluster }), 201);
    await writeFile(
      path.join(dir, 'token'),
      ok('token', await api.post<{ token: string }>(`/clusters/${cluster}/enrollment-tokens`), 201).token,
      { mode: 0o600 },
    );
    await writeFile(
      path.join(dir, 'ca.pem'),
      ok('trust', await api.get<{ caCertificatePem: string }>('/agents/trust'), 200).caCertificatePem,
    );

    const port = await freeLoopbackPort();
    const webhook = uniqueName('sigil-inject');
    await createInjectionWebhook(admission, webhook, port, [namespace]);
    cleanup.push(() => admission.deleteMutatingWebhookConfiguration({ name: webhook }));
    agent = await AgentProcess.start({
      controlPlane: cp.cp.grpcAddress,
      caFile: path.join(dir, 'ca.pem'),
      cluster,
      stateDir: path.join(dir, 'state'),
      enrollmentTokenFile: path.join(dir, 'token'),
      inject: true,
      injectHost: '127.0.0.1',
      injectPort: port,
      injectUrl: `https://127.0.0.1:${port}`,
      injectNames: ['127.0.0.1'],
      injectWebhook: webhook,
      injectImage: 'sigil-agent:dev',
    });
    const started = agent;
    cleanup.push(() => started.stop());
    await eventually('agent ready', async () => holds((await fetch(`${started.metricsUrl}/readyz`)).ok), 30_000);
    await eventually(
      'caBundle',
      async () =>
        holds(Boolean((await admission.readMutatingWebhookConfiguration({ name: webhook })).webhooks?.[0]?.clientConfig.caBundle)),
      30_000,
    );
    ok('publish', await api.post(`/projects/${project}/apps/pay/publish`, { clusters: [cluster] }), 200);
    await eventually(
      'provisioned',
      async () =>
        holds(
          (await api.get<{ summary: { provisioned: number } }>(`/projects/${project}/apps/pay/publication`)).body.summary.provisioned === 1,
        ),
      30_000,
    );

    // init: pod creation to the value on disk.
    const init = { admit: [] as number[], token: [] as number[], injector: [] as number[], total: [] as number[] };
    const floor = { create: [] as number[], node: [] as number[] };
    log(`[injection] ${WARMUP} warm-up + ${ITERATIONS} init runs`);
    for (let i = 0; i < WARMUP + ITERATIONS; i++) {
      const root = await mkdtemp(path.join(dir, 'pod-'));
      const t0 = performance.now();
      const pod = await core.createNamespacedPod({ namespace, body: injectablePod(uniqueName('p'), 'pay', { 'sigil.dev/inject': 'pay' }) });
      const t1 = performance.now();
      const token = await podToken(core, pod);
      const t2 = performance.now();
      const run = await runInjector('init', await injectorEnv(pod, 'sigil-inject-init', token, root)).done;
      const t3 = performance.now();
      if (run.code !== 0) throw new Error(`the injector failed: ${run.stderr}`);
      if ((await readFile(path.join(root, 'files', 'pay-db', KEY), 'utf8')).length === 0) throw new Error('no value written');
      if (i < WARMUP) continue;
      init.admit.push(t1 - t0);
      init.token.push(t2 - t1);
      init.injector.push(t3 - t2);
      init.total.push(t3 - t0);
      const f0 = performance.now();
      await core.createNamespacedPod({ namespace, body: injectablePod(uniqueName('f'), 'pay', undefined) });
      floor.create.push(performance.now() - f0);
      const n0 = performance.now();
      spawnSync(process.execPath, ['-e', '0']);
      floor.node.push(performance.now() - n0);
    }

    // sidecar: a rotation to the file.
    const pod = await core.createNamespacedPod({
      namespace,
      body: injectablePod(uniqueName('s'), 'pay', { 'sigil.dev/inject': 'pay', 'sigil.dev/inject-mode': 'sidecar' }),
    });
    const root = await mkdtemp(path.join(dir, 'sidecar-'));
    const token = await podToken(core, pod);
    const sidecarEnv = await injectorEnv(pod, 'sigil-inject-sidecar', token, root);
    const first = await runInjector('init', await injectorEnv(pod, 'sigil-inject-init', token, root)).done;
    if (first.code !== 0) throw new Error(`the injector failed: ${first.stderr}`);
    const sidecar = runInjector('sidecar', sidecarEnv);
    cleanup.push(() => sidecar.kill());
    const file = path.join(root, 'files', 'pay-db', KEY);
    const rotation = { total: [] as number[], rest: [] as number[] };
    log(`[injection] ${WARMUP} warm-up + ${ITERATIONS} rotations through the sidecar`);
    await sleep(500);
    for (let i = 0; i < WARMUP + ITERATIONS; i++) {
      const value = `rotated-${randomBytes(8).toString('hex')}`;
      const t0 = performance.now();
      ok('rotate', await api.put(secretPath, { data: { [KEY]: value } }), 200);
      const t1 = performance.now();
      for (;;) {
        if ((await readFile(file, 'utf8').catch(() => '')) === value) break;
        if (performance.now() - t0 > 15_000)
          throw new Error(`the sidecar did not write the rotation within 15 s: ${sidecar.stderr().slice(-500)}`);
        await sleep(2);
      }
      const t2 = performance.now();
      if (i >= WARMUP) {
        rotation.total.push(t2 - t0);
        rotation.rest.push(t1 - t0);
      }
      await sleep(20 + Math.random() * 30);
    }

    const s = (xs: number[]): Stats => stats(xs);
    const results = {
      iterations: ITERATIONS,
      init: { total: s(init.total), admit: s(init.admit), token: s(init.token), injector: s(init.injector) },
      floor: { unannotatedCreate: s(floor.create), nodeStart: s(floor.node) },
      rotation: { total: s(rotation.total), rest: s(rotation.rest) },
    };
    const row = (name: string, x: Stats, note: string) => [name, fmtMs(x.p50), fmtMs(x.p99), note];
    const md = [
      `# bench/injection (${machineLine()})`,
      '',
      `${ITERATIONS} runs each after ${WARMUP} warm-up; real kube-apiserver, control plane, agent and injector process on one machine.`,
      '',
      table(
        ['measurement', 'p50', 'p99', 'what'],
        [
          row('init: pod created → value on disk', results.init.total, 'Pod CREATE (webhook) + TokenRequest + injector run'),
          row(
            '… Pod CREATE through the webhook',
            results.init.admit,
            `floor: unannotated CREATE p50 ${fmtMs(results.floor.unannotatedCreate.p50)}, p99 ${fmtMs(results.floor.unannotatedCreate.p99)}`,
          ),
          row('… pod-bound TokenRequest', results.init.token, 'the kubelet does this at pod start'),
          row(
            '… injector process (start, TokenReview, decrypt, write)',
            results.init.injector,
            `floor: node -e 0 p50 ${fmtMs(results.floor.nodeStart.p50)}, p99 ${fmtMs(results.floor.nodeStart.p99)}`,
          ),
          row(
            'sidecar: REST write → file updated',
            results.rotation.total,
            `floor: the REST write p50 ${fmtMs(results.rotation.rest.p50)}, p99 ${fmtMs(results.rotation.rest.p99)}`,
          ),
        ],
      ),
      '',
    ].join('\n');
    process.stdout.write(`\n${md}\n`);
    await writeResults('injection', results, md);
  } catch (err) {
    if (agent) process.stderr.write(`\n[bench/injection] agent log (tail):\n${agent.logs().slice(-3000)}\n`);
    if (cp) process.stderr.write(`\n[bench/injection] control-plane log (tail):\n${cp.cp.logs().slice(-3000)}\n`);
    throw err;
  } finally {
    for (const c of cleanup.reverse()) {
      try {
        await c();
      } catch (err) {
        process.stderr.write(`[bench/injection] clean-up step failed: ${(err as Error).message}\n`);
      }
    }
  }
}

try {
  await main();
} catch (err) {
  process.stderr.write(`\nbench/injection failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
}
