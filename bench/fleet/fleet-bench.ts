import { randomBytes } from 'node:crypto';
import { cpuMeter } from '../lib/cpu.js';
import { BenchStack } from '../lib/stack.js';
import { fmtMs, log, machineLine, mark, table, writeResults } from '../lib/results.js';
import { Fleet, type EnrollResult, type Registration } from './fleet.js';
import { grpcFloors, hsmFloor, queueFloor, type Floor } from './floors.js';
import { resultName, TARGETS, type Phase, type Reconnect } from './fleet-results.js';
import { measureFleetPages, watchFleetEvents, type FleetViewStream } from './fleet-view.js';
import { now } from './sim-protocol.js';

/**
 * bench/fleet: N simulated agents (separate processes, real mTLS gRPC on loopback, one Sync
 * stream each, an in-memory Kubernetes) against one or more control-plane processes on real
 * PostgreSQL, Redis and SoftHSM.
 *
 *   setup     register N clusters through the REST API (timed, not a phase)
 *   floors    each alone on the machine: raw HSM wraps, BullMQ no-op fan-out (per cluster and
 *             batched), gRPC (stream open, one message each way on N streams, unary calls)
 *   enroll    all N agents at once                                      ≤ 30 s, zero failures
 *   streams   every agent opens its Sync stream; control-plane RSS     ≤ 800 MiB
 *   publish   a K-secret app to all N, until every agent acked         ≤ 10 s, ≤ 1.5× HSM floor
 *   rotate    one value                                                ≤ 3 s
 *   reconnect SIGTERM every control plane, start again (same ports and state), until every
 *             agent is connected and at its built generation; states resent   ≤ 30 s
 *   unpublish                                                          ≤ 3 s
 *   CPU       per process per phase; control plane + PostgreSQL per cluster per change ≤ 0.5 ms
 *
 *   make bench-fleet          # BENCH_AGENTS=10000 BENCH_SECRETS=10 BENCH_SIM_PROCS=4 BENCH_REPLICAS=1
 *   make bench-fleet-sizes    # 1,000, 3,000, 10,000 and 10,000 on 2 replicas, then the growth table
 *
 * Reconnect runs between rotate and unpublish, so the agents hold the app when the control plane
 * goes away: a resend would be a full 10-secret state, and the count of states received says
 * whether any was sent.
 */

const N = Number(process.env.BENCH_AGENTS ?? 10_000);
const K = Number(process.env.BENCH_SECRETS ?? 10);
const PROCS = Number(process.env.BENCH_SIM_PROCS ?? 4);
const REPLICAS = Number(process.env.BENCH_REPLICAS ?? 1);
const ENROLL_CONCURRENCY = Number(process.env.BENCH_ENROLL_CONCURRENCY ?? 64);
const REGISTER_CONCURRENCY = Number(process.env.BENCH_REGISTER_CONCURRENCY ?? 16);
/** Clusters per build job of the batched builder, for the batched BullMQ floor. */
const BUILD_BATCH = Number(process.env.BENCH_BUILD_BATCH ?? 200);
/** The size of one agent's desired state of K secrets on the wire, for the stream floor (≈ 400 bytes a secret). */
const STATE_BYTES = Number(process.env.BENCH_STATE_BYTES ?? K * 400);
const NAMESPACE = 'store';

async function main(): Promise<void> {
  log(`fleet: ${N} agents in ${PROCS} processes, ${K} secrets, ${REPLICAS} control-plane replica(s)`);
  const stack = await BenchStack.start({}, { replicas: REPLICAS });
  let fleet: Fleet | undefined;
  try {
    log('floors (each alone on the machine)…');
    const floors: Floor[] = [];
    floors.push(await hsmFloor(stack.hsmToken, N * K));
    floors.push(await queueFloor(stack.redisUrl, N));
    floors.push(await queueFloor(stack.redisUrl, N, BUILD_BATCH));
    floors.push(...(await grpcFloors(N, PROCS, stack.dir, STATE_BYTES)));
    for (const f of floors) log(`  ${f.name}: ${fmtMs(f.ms)} (${f.what})`);
    const floor = (name: string) => floors.find((f) => f.name === name)!;

    log(`registering ${N} clusters through the REST API…`);
    fleet = await Fleet.create(stack, {
      size: N,
      processes: PROCS,
      prefix: 'store',
      labels: { fleet: 'bench' },
      registerConcurrency: REGISTER_CONCURRENCY,
    });
    const registration: Registration = fleet.registration!;
    log(`  ${N} clusters and tokens in ${fmtMs(registration.durationMs)} (${Math.round(registration.perSecond)}/s), setup`);
    const f = fleet;
    const meter = () =>
      cpuMeter({
        'control plane': (pid) => stack.controlPlanePids.includes(pid),
        PostgreSQL: (_pid, comm) => comm === 'postgres',
        Redis: (_pid, comm) => comm.startsWith('redis'),
        'simulated agents': (pid) => f.pids.includes(pid),
        'bench driver': (pid) => pid === process.pid,
      });
    const centre = (cpu: Record<string, number>) => (cpu['control plane'] ?? 0) + (cpu.PostgreSQL ?? 0);

    const enrollStatements = await stack.statementStats();
    const enrollCpu = meter();
    log(`enrolling ${N} agents…`);
    const enroll: EnrollResult = await fleet.enroll(ENROLL_CONCURRENCY, progress('enrolled'));
    const enrollCpuMs = enrollCpu();
    const enrollTop = await enrollStatements();
    if (enrollTop) log(`statements that cost PostgreSQL most during enrollment:\n${enrollTop}`);
    log(`  ${enroll.ok} enrolled, ${enroll.failed} failed in ${fmtMs(enroll.durationMs)} (${Math.round(enroll.perSecond)}/s)`);
    log(`  TLS so far: ${await tlsCounters(stack)}`);
    // Zero failures is a target, not a statistic: a store whose agent fails here is locked out.
    if (enroll.failed > 0)
      throw new Error(
        `${enroll.failed} enrollment failures, by kind: ${Object.entries(enroll.errorKinds)
          .map(([k, n]) => `${n}× ${k}`)
          .join('; ')}`,
      );

    log('opening every Sync stream…');
    const streamsCpu = meter();
    const streamsMs = await fleet.watch(300_000, progress('connected'));
    log(`  ${N} streams in ${fmtMs(streamsMs)} (${fleet.admissionRejections} admission-ramp retries)`);
    log(`  TLS so far: ${await tlsCounters(stack)}`);
    // Enrollment's builds settle: every agent at its built generation, from both sides.
    await fleet.expect({ phase: 'idle', secrets: 0, namespace: NAMESPACE }, 300_000);
    const settled = await fleet.inSync(300_000, progress('in sync'));
    const streamsCpuMs = streamsCpu();
    const rss = await stack.controlPlaneRssMiB();
    const memory = await stack.controlPlaneMemory();
    const footprint = { controlPlaneRssMiB: rss, controlPlaneMemory: memory, simulatorRssMiB: fleet.simRssMiB() };
    log(`  control-plane RSS with ${N} streams: ${rss.map((r) => r.toFixed(0)).join(' + ')} MiB; ${JSON.stringify(settled.check)}`);
    for (const m of memory)
      log(
        `  … of it V8 heap ${m.heapUsedMiB.toFixed(0)} MiB used of ${m.heapTotalMiB.toFixed(0)} MiB, external ${m.externalMiB.toFixed(0)} MiB`,
      );

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
      const statements = await stack.statementStats();
      const cpu = meter();
      const mono0 = monotonicUs();
      const t0 = now();
      await request();
      const restMs = now() - t0;
      const lastAck = await f.expect(expectation, 600_000, progress('acked'));
      const cpuMs = cpu();
      log(`  ${name}: profile window ${mono0} ${monotonicUs()} (µs, CLOCK_MONOTONIC: bench/fleet/profile-top.ts)`);
      phases.push({ name, ackedMs: lastAck - t0, restMs, cpuMs, cpuPerClusterMs: centre(cpuMs) / N });
      log(`  every agent acked ${fmtMs(lastAck - t0)} after the request (REST answered in ${fmtMs(restMs)}); ${f.describeSims()}`);
      const top = await statements();
      if (top) log(`statements that cost PostgreSQL most during ${name}:\n${top}`);
    };
    await run(
      'publish',
      async () => ok(await api.post('/projects/bench/apps/pos/publish', { selector: { matchLabels: { fleet: 'bench' } } }), 'publish'),
      { phase: 'publish', secrets: K, namespace: NAMESPACE },
    );
    const published = (await api.get<{ summary: Record<string, unknown> }>('/projects/bench/apps/pos/publication')).body.summary;
    // The console's fleet view at this size: its pages, then its event stream during the rotation.
    const APP = '/projects/bench/apps/pos';
    const pages = await measureFleetPages(api, APP, `store-${String(Math.floor(N / 2)).padStart(5, '0')}`);
    log(`  fleet view pages (median of 5): ${JSON.stringify(pages)}`);
    const view = await watchFleetEvents(api, APP, (row) => row.secrets.some((x) => x.name === 's0' && x.version >= 2 && x.applied));
    view.start();
    await run(
      'rotate one value',
      async () => ok(await api.put('/projects/bench/apps/pos/secrets/s0', { data: { VALUE: randomBytes(32).toString('hex') } }), 'rotate'),
      { phase: 'rotate', secrets: K, namespace: NAMESPACE, version: { name: 's0', atLeast: 2 } },
    );

    // The stream may trail the agents' acks by its coalescing window: wait for it (at most 30 s).
    const streamDeadline = now() + 30_000;
    while (view.snapshot().clustersDone < N && now() < streamDeadline) await new Promise((r) => setTimeout(r, 250));
    const stream: FleetViewStream = view.stop();
    log(`  fleet view event stream during the rotation: ${JSON.stringify(stream)}`);

    const reconnect = await reconnectPhase(stack, fleet, meter);
    log(
      `  all ${N} agents back and in sync ${fmtMs(reconnect.ms)} after SIGTERM (restart ${fmtMs(reconnect.restartMs)}); ` +
        `${reconnect.statesResent} states resent (${reconnect.completeStatesResent} complete)`,
    );

    await run('unpublish', async () => ok(await api.post('/projects/bench/apps/pos/unpublish', {}), 'unpublish'), {
      phase: 'unpublish',
      secrets: 0,
      namespace: NAMESPACE,
    });

    const [publish, rotate, unpublish] = phases as [Phase, Phase, Phase];
    const hsm = floor('HSM wraps');
    const ratio = (ms: number, fl: Floor) => `${(ms / fl.ms).toFixed(1)}× ${fl.name}`;
    const rssMax = Math.max(...rss);
    const md = [
      `bench/fleet — ${machineLine()}`,
      '',
      `${N} simulated agents in ${PROCS} processes (real mTLS gRPC on loopback, own TLS key and one Sync stream per agent, in-memory Kubernetes), ${REPLICAS === 1 ? 'one control-plane process' : `${REPLICAS} control-plane processes (every role each; agents spread across their gRPC ports; REST through the first)`}, PostgreSQL, Redis and SoftHSM on the same 2-core machine. App with ${K} secrets. Setup (not measured): ${N} clusters registered through the REST API in ${fmtMs(registration.durationMs)} (${Math.round(registration.perSecond)}/s, ${registration.concurrency} in flight).`,
      '',
      table(
        ['measurement', 'result', 'vs floor', 'target'],
        [
          [
            `enroll ${N} at once`,
            `${fmtMs(enroll.durationMs)} (${Math.round(enroll.perSecond)}/s, ${enroll.failed} failed, ${enroll.retries} retries, p50 ${fmtMs(enroll.latencyP50Ms)}, p99 ${fmtMs(enroll.latencyP99Ms)} per agent)`,
            ratio(enroll.durationMs, floor('gRPC unary round trips')),
            `≤ 30 s, 0 failed ${mark(enroll.durationMs <= TARGETS.enrollMs && enroll.failed === 0)}`,
          ],
          [
            `open ${N} Sync streams`,
            `${fmtMs(streamsMs)} (${fleet.admissionRejections} admission-ramp retries)`,
            ratio(streamsMs, floor('gRPC stream open')),
            '',
          ],
          [
            `control-plane RSS, ${N} streams`,
            `${rss.map((r) => r.toFixed(0)).join(' + ')} MiB`,
            '',
            `≤ ${TARGETS.rssMiB} MiB ${mark(rssMax <= TARGETS.rssMiB)}`,
          ],
          [
            'publish: every agent acked',
            `${fmtMs(publish.ackedMs)} (REST ${fmtMs(publish.restMs)})`,
            `${ratio(publish.ackedMs, hsm)}; ${ratio(publish.ackedMs, floor('gRPC stream round trip'))}`,
            `≤ 10 s, ≤ 1.5× HSM ${mark(publish.ackedMs <= TARGETS.publishMs && publish.ackedMs <= TARGETS.publishPerHsmFloor * hsm.ms)}`,
          ],
          [
            'rotate one value: every agent acked',
            `${fmtMs(rotate.ackedMs)} (REST ${fmtMs(rotate.restMs)})`,
            ratio(rotate.ackedMs, floor('gRPC stream round trip')),
            `≤ 3 s ${mark(rotate.ackedMs <= TARGETS.rotateMs)}`,
          ],
          [
            `reconnect after a restart: all ${N} in sync`,
            `${fmtMs(reconnect.ms)} after SIGTERM (restart ${fmtMs(reconnect.restartMs)}, then ${fmtMs(reconnect.afterReadyMs)}); ${reconnect.statesResent} states resent, ${reconnect.admissionRetries} admission-ramp retries; TLS ${reconnect.tls.resumed} resumed, ${reconnect.tls.full} full, ${reconnect.tls.refused} reset at the handshake bound`,
            ratio(reconnect.afterReadyMs, floor('gRPC stream open')),
            `≤ 30 s ${mark(reconnect.ms <= TARGETS.reconnectMs)}, 0 resent ${mark(reconnect.statesResent === 0)}`,
          ],
          [
            'unpublish: every agent acked',
            `${fmtMs(unpublish.ackedMs)} (REST ${fmtMs(unpublish.restMs)})`,
            ratio(unpublish.ackedMs, floor('gRPC stream round trip')),
            `≤ 3 s ${mark(unpublish.ackedMs <= TARGETS.unpublishMs)}`,
          ],
          [
            'console fleet view: a page of 200 (first / deep / filtered / by label, median of 5)',
            `${fmtMs(pages.firstPageMs)} / ${fmtMs(pages.deepPageMs)} / ${fmtMs(pages.filteredMs)} / ${fmtMs(pages.labelledMs)}`,
            '',
            '',
          ],
          [
            'console fleet view: its event stream during the rotation',
            `${stream.clustersDone} of ${N} clusters shown applied, the last ${stream.lastDoneMs === undefined ? '—' : fmtMs(stream.lastDoneMs)} after the request (agents acked at ${fmtMs(rotate.ackedMs)}); ${stream.rows} rows in ${stream.messages} messages, the largest ${(stream.largestMessageBytes / 1024).toFixed(0)} KiB`,
            '',
            '',
          ],
          ...phases.map((p) => [
            `${p.name}: control plane + PostgreSQL CPU per cluster`,
            `${p.cpuPerClusterMs.toFixed(2)} ms`,
            '',
            `≤ ${TARGETS.cpuPerClusterChangeMs} ms ${mark(p.cpuPerClusterMs <= TARGETS.cpuPerClusterChangeMs)}`,
          ]),
        ],
      ),
      '',
      'Floors, each measured alone in this run:',
      '',
      table(
        ['floor', 'time', 'what'],
        floors.map((fl) => [fl.name, fmtMs(fl.ms), fl.what]),
      ),
      '',
      `Status after publish: ${JSON.stringify(published)}.`,
      '',
      'Where the CPU went (CPU seconds per process during each phase, from /proc; the machine has 2 cores):',
      '',
      cpuTable([
        { name: `enroll (${fmtMs(enroll.durationMs)})`, cpuMs: enrollCpuMs },
        { name: `open streams, settle (${fmtMs(streamsMs)})`, cpuMs: streamsCpuMs },
        ...phases.map((p) => ({ name: `${p.name} (${fmtMs(p.ackedMs)})`, cpuMs: p.cpuMs })),
        { name: `reconnect (${fmtMs(reconnect.ms)})`, cpuMs: reconnect.cpuMs },
      ]),
    ].join('\n');
    // Errors the control plane logged during the run, grouped: part of the result, not noise.
    const errorKinds = new Map<string, number>();
    for (const l of stack
      .logs()
      .split('\n')
      .filter((line) => /"level":(50|60)|"level":"(error|fatal)"/.test(line))) {
      const msg = /"msg":"([^"]*)"/.exec(l)?.[1] ?? l.slice(0, 120);
      const err = /"message":"([^"]{0,160})/.exec(l)?.[1] ?? '';
      errorKinds.set(`${msg}: ${err}`, (errorKinds.get(`${msg}: ${err}`) ?? 0) + 1);
    }
    if (errorKinds.size > 0) log(`control-plane errors:\n${[...errorKinds].map(([k, n]) => `  ${n}× ${k}`).join('\n')}`);
    process.stdout.write(`${md}\n`);
    await writeResults(
      resultName(N, REPLICAS),
      {
        agents: N,
        secrets: K,
        processes: PROCS,
        replicas: REPLICAS,
        registration,
        enroll,
        streamsMs,
        footprint,
        phases,
        reconnect,
        fleetView: { pages, stream },
        floors,
        published,
        targets: TARGETS,
        controlPlaneErrors: Object.fromEntries(errorKinds),
      },
      md,
    );
  } catch (err) {
    const errors = stack
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

/**
 * SIGTERM every control plane, start it again on the same ports and state, and wait until every
 * agent has its stream open again and is at its cluster's built generation (what it acked and
 * what the control plane recorded). Counts the desired states the agents received meanwhile:
 * an agent at the built generation should get none.
 */
async function reconnectPhase(stack: BenchStack, fleet: Fleet, meter: () => () => Record<string, number>): Promise<Reconnect> {
  log('reconnect: restarting the control plane…');
  await fleet.freshStats();
  const before = fleet.statesReceived;
  const retriesBefore = fleet.admissionRejections;
  const cpu = meter();
  const mono0 = monotonicUs();
  const t0 = now();
  const { stoppedAt, readyAt } = await stack.restartControlPlane('SIGTERM');
  // The counters the simulators sent before the restart are stale; wait for ones sent after it.
  await fleet.freshStats();
  const connectedAtReady = fleet.connected;
  log(`  stopped after ${fmtMs(stoppedAt - t0)}, ready after ${fmtMs(readyAt - t0)}; ${connectedAtReady} streams up`);
  const { at, check } = await fleet.inSync(600_000, progress('back in sync'));
  const cpuMs = cpu();
  log(`  reconnect: profile window ${mono0} ${monotonicUs()} (µs, CLOCK_MONOTONIC: bench/fleet/profile-top.ts)`);
  await fleet.freshStats();
  const after = fleet.statesReceived;
  // The restarted processes count from zero: everything they counted is this phase's.
  const tls = {
    resumed: await stack.counter('sigil_agent_tls_sessions_total', 'handshake="resumed"'),
    full: await stack.counter('sigil_agent_tls_sessions_total', 'handshake="full"'),
    refused: await stack.counter('sigil_agent_connections_refused_total', 'reason="handshakes_full"'),
  };
  log(`  TLS: ${tls.resumed} sessions resumed, ${tls.full} full handshakes, ${tls.refused} connections reset at the handshake bound`);
  return {
    tls,
    ms: at - t0,
    restartMs: readyAt - t0,
    afterReadyMs: at - readyAt,
    connectedAtReady,
    statesResent: after.states - before.states,
    completeStatesResent: after.complete - before.complete,
    admissionRetries: fleet.admissionRejections - retriesBefore,
    check,
    cpuMs,
  };
}

/** The control planes' TLS counters since they started (agent-listener.ts). */
async function tlsCounters(stack: BenchStack): Promise<string> {
  const resumed = await stack.counter('sigil_agent_tls_sessions_total', 'handshake="resumed"');
  const full = await stack.counter('sigil_agent_tls_sessions_total', 'handshake="full"');
  const reset = await stack.counter('sigil_agent_connections_refused_total', 'reason="handshakes_full"');
  return `${full} full handshakes, ${resumed} resumed, ${reset} connections reset at the handshake bound`;
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

/** The clock V8 stamps `--cpu-prof` samples with, in µs: phases can be cut out of a profile. */
const monotonicUs = (): string => String(process.hrtime.bigint() / 1000n);
