import { randomBytes } from 'node:crypto';
import { cpuMeter } from '../lib/cpu.js';
import { BenchStack } from '../lib/stack.js';
import { fmtMs, log, machineLine, mark, table, writeResults } from '../lib/results.js';
import { Fleet, type EnrollResult } from './fleet.js';
import { grpcFloor, hsmFloor, queueFloor, type Floor } from './floors.js';
import { now } from './sim-protocol.js';

/**
 * bench/fleet: N simulated agents (separate processes, real mTLS gRPC on loopback, an in-memory
 * Kubernetes) against one control-plane process on real PostgreSQL, Redis and SoftHSM.
 *
 *   1. floors, each alone on the machine: raw HSM wraps, a BullMQ no-op fan-out, gRPC round trips
 *   2. enroll: all N agents enroll at once (bootstrap tokens)           target: ≤ 60 s
 *   3. footprint: every agent holds its Watch stream; control-plane RSS
 *   4. publish an app with K secrets to all N clusters, until every agent acked   target: ≤ 10 s
 *   5. rotate one value, until every agent acked the new version
 *   6. unpublish, until every agent deleted the Secrets and acked                  target: ≤ 10 s
 *
 *   make bench-fleet                       # BENCH_AGENTS=10000 BENCH_SECRETS=10 BENCH_SIM_PROCS=4
 */

const N = Number(process.env.BENCH_AGENTS ?? 10_000);
const K = Number(process.env.BENCH_SECRETS ?? 10);
const PROCS = Number(process.env.BENCH_SIM_PROCS ?? 4);
const ENROLL_CONCURRENCY = Number(process.env.BENCH_ENROLL_CONCURRENCY ?? 64);
const FANOUT_TARGET_MS = 10_000;
const ENROLL_TARGET_MS = 60_000;
const NAMESPACE = 'store';

interface Phase {
  name: string;
  ackedMs: number;
  restMs: number;
  /** CPU milliseconds per process role during the phase. */
  cpuMs: Record<string, number>;
}

async function main(): Promise<void> {
  log(`fleet: ${N} agents in ${PROCS} processes, ${K} secrets`);
  const stack = await BenchStack.start();
  let fleet: Fleet | undefined;
  try {
    log('floors (each alone on the machine)…');
    const floors: Floor[] = [];
    floors.push(await hsmFloor(stack.hsmToken, N * K));
    floors.push(await queueFloor(stack.redisUrl, N));
    floors.push(await grpcFloor(N, PROCS, stack.dir));
    for (const f of floors) log(`  ${f.name}: ${fmtMs(f.ms)} (${f.what})`);

    fleet = await Fleet.create(stack, { size: N, processes: PROCS, prefix: 'store', labels: { fleet: 'bench' } });
    const f = fleet;
    const meter = () =>
      cpuMeter({
        'control plane': (pid) => pid === stack.cp.child.pid,
        PostgreSQL: (_pid, comm) => comm === 'postgres',
        Redis: (_pid, comm) => comm.startsWith('redis'),
        'simulated agents': (pid) => f.pids.includes(pid),
        'bench driver': (pid) => pid === process.pid,
      });
    const enrollCpu = meter();
    log(`enrolling ${N} agents…`);
    const enroll: EnrollResult = await fleet.enroll(ENROLL_CONCURRENCY, progress('enrolled'));
    const enrollCpuMs = enrollCpu();
    log(`  ${enroll.ok} enrolled, ${enroll.failed} failed in ${fmtMs(enroll.durationMs)} (${Math.round(enroll.perSecond)}/s)`);
    if (enroll.failed > 0) throw new Error(`enrollment failures: ${enroll.errors.join('; ')}`);

    log('opening every Watch stream…');
    const watchMs = await fleet.watch(300_000, progress('connected'));
    log(`  ${N} streams in ${fmtMs(watchMs)} (${fleet.admissionRejections} admission-ramp retries)`);
    // Let the enrollment builds settle before measuring footprint and fan-out.
    await fleet.expect({ phase: 'idle', secrets: 0, namespace: NAMESPACE }, 300_000);
    await new Promise((r) => setTimeout(r, 3000));
    const footprint = { controlPlaneRssMiB: await stack.controlPlaneRssMiB(), simulatorRssMiB: fleet.simRssMiB() };
    log(`  control plane RSS with ${N} streams: ${footprint.controlPlaneRssMiB.toFixed(0)} MiB`);

    const api = stack.admin;
    const ok = (r: { status: number; text: string }, what: string) => {
      if (r.status >= 300) throw new Error(`${what}: ${r.status} ${r.text}`);
    };
    ok(await api.post('/projects', { name: 'bench' }), 'create project');
    ok(await api.put('/projects/bench/cluster-selector', { selector: {} }), 'cluster selector');
    ok(await api.put('/projects/bench/namespaces', { namespaces: [NAMESPACE] }), 'namespaces');
    ok(await api.post('/projects/bench/apps', { name: 'pos', namespace: NAMESPACE, deliveryMode: 'volume' }), 'create app');
    for (let i = 0; i < K; i++)
      ok(await api.post('/projects/bench/apps/pos/secrets', { name: `s${i}`, data: { VALUE: randomBytes(32).toString('hex') } }), 'secret');

    const phases: Phase[] = [];
    const run = async (name: string, request: () => Promise<void>, expectation: Parameters<Fleet['expect']>[0]) => {
      log(`${name}…`);
      const cpu = meter();
      const t0 = now();
      await request();
      const restMs = now() - t0;
      const lastAck = await fleet!.expect(expectation, 600_000, progress('acked'));
      phases.push({ name, ackedMs: lastAck - t0, restMs, cpuMs: cpu() });
      log(`  every agent acked ${fmtMs(lastAck - t0)} after the request (REST answered in ${fmtMs(restMs)}); ${fleet!.describeSims()}`);
    };
    const statements = await stack.statementStats();
    await run(
      'publish',
      async () => ok(await api.post('/projects/bench/apps/pos/publish', { selector: { matchLabels: { fleet: 'bench' } } }), 'publish'),
      { phase: 'publish', secrets: K, namespace: NAMESPACE },
    );
    const top = await statements();
    if (top) log(`statements that cost PostgreSQL most during publish:\n${top}`);
    const published = (await api.get<{ summary: Record<string, unknown> }>('/projects/bench/apps/pos/publication')).body.summary;
    await run(
      'rotate one value',
      async () => ok(await api.put('/projects/bench/apps/pos/secrets/s0', { data: { VALUE: randomBytes(32).toString('hex') } }), 'rotate'),
      { phase: 'rotate', secrets: K, namespace: NAMESPACE, version: { name: 's0', atLeast: 2 } },
    );
    await run('unpublish', async () => ok(await api.post('/projects/bench/apps/pos/unpublish', {}), 'unpublish'), {
      phase: 'unpublish',
      secrets: 0,
      namespace: NAMESPACE,
    });

    const bottleneck = floors.reduce((a, b) => (a.ms > b.ms ? a : b));
    const floorSum = floors.reduce((n, f) => n + f.ms, 0);
    const publish = phases[0]!;
    const md = [
      `bench/fleet — ${machineLine()}`,
      '',
      `${N} simulated agents in ${PROCS} processes (real mTLS gRPC on loopback, own TLS key per agent, in-memory Kubernetes), one control-plane process, PostgreSQL, Redis and SoftHSM on the same 2-core machine. App with ${K} secrets.`,
      '',
      table(
        ['measurement', 'result', 'target'],
        [
          [
            `enroll ${N} at once`,
            `${fmtMs(enroll.durationMs)} (${Math.round(enroll.perSecond)}/s, p50 ${fmtMs(enroll.latencyP50Ms)}, p99 ${fmtMs(enroll.latencyP99Ms)} per agent)`,
            `≤ 60 s ${mark(enroll.durationMs <= ENROLL_TARGET_MS)}`,
          ],
          [`open ${N} Watch streams`, `${fmtMs(watchMs)} (admission ramp; ${fleet.admissionRejections} retries)`, ''],
          [`control-plane RSS, ${N} streams`, `${footprint.controlPlaneRssMiB.toFixed(0)} MiB`, ''],
          ...phases.map((p) => [
            `${p.name}: every agent acked`,
            `${fmtMs(p.ackedMs)} (REST ${fmtMs(p.restMs)})`,
            p.name === 'rotate one value' ? '' : `≤ 10 s ${mark(p.ackedMs <= FANOUT_TARGET_MS)}`,
          ]),
        ],
      ),
      '',
      'Floors, each measured alone in this run:',
      '',
      table(
        ['floor', 'time', 'what'],
        floors.map((f) => [f.name, fmtMs(f.ms), f.what]),
      ),
      '',
      `Publish / bottleneck floor (${bottleneck.name}): **${(publish.ackedMs / bottleneck.ms).toFixed(1)}×**; publish / sum of floors: **${(publish.ackedMs / floorSum).toFixed(1)}×**.`,
      '',
      `Status after publish: ${JSON.stringify(published)}.`,
      '',
      'Where the CPU went (CPU seconds per process during each phase, from /proc; the machine has 2 cores):',
      '',
      cpuTable([
        { name: `enroll (${fmtMs(enroll.durationMs)})`, cpuMs: enrollCpuMs },
        ...phases.map((p) => ({ name: `${p.name} (${fmtMs(p.ackedMs)})`, cpuMs: p.cpuMs })),
      ]),
    ].join('\n');
    // Errors the control plane logged during the run, grouped: part of the result, not noise.
    const errorLines = stack.cp
      .logs()
      .split('\n')
      .filter((l) => /"level":(50|60)|"level":"(error|fatal)"/.test(l));
    const errorKinds = new Map<string, number>();
    for (const l of errorLines) {
      const msg = /"msg":"([^"]*)"/.exec(l)?.[1] ?? l.slice(0, 120);
      const err = /"message":"([^"]{0,160})/.exec(l)?.[1] ?? '';
      errorKinds.set(`${msg}: ${err}`, (errorKinds.get(`${msg}: ${err}`) ?? 0) + 1);
    }
    if (errorKinds.size > 0) log(`control-plane errors:\n${[...errorKinds].map(([k, n]) => `  ${n}× ${k}`).join('\n')}`);
    process.stdout.write(`${md}\n`);
    await writeResults(
      `fleet-${N}`,
      { agents: N, secrets: K, processes: PROCS, enroll, watchMs, footprint, phases, floors, published },
      md,
    );
  } catch (err) {
    const errors = stack.cp
      .logs()
      .split('\n')
      .filter((l) => /error/i.test(l));
    process.stderr.write(`control-plane errors (${errors.length}), last ones:\n${errors.slice(-5).join('\n')}\n`);
    throw err;
  } finally {
    await fleet?.stop();
    await stack.stop();
  }
}

function cpuTable(rows: Array<{ name: string; cpuMs: Record<string, number> }>): string {
  const roles = ['control plane', 'PostgreSQL', 'Redis', 'simulated agents', 'bench driver', 'other'];
  return table(
    ['phase', ...roles],
    rows.map((r) => [r.name, ...roles.map((role) => ((r.cpuMs[role] ?? 0) / 1000).toFixed(1))]),
  );
}

function progress(what: string): (n: number) => void {
  let last = 0;
  return (n) => {
    if (Date.now() - last < 2000) return;
    last = Date.now();
    log(`  … ${n}/${N} ${what}`);
  };
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench/fleet failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
