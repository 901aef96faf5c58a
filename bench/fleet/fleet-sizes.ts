import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { fmtMs, log, machineLine, RESULTS_DIR, table, writeResults } from '../lib/results.js';
import { resultName, TARGETS, type FleetResult } from './fleet-results.js';

/**
 * bench/fleet at several sizes, one run after the other (each a fresh stack), then one table
 * across them so the growth is visible: each measurement at each size and per 1,000 clusters
 * (flat per-1,000 figures = linear).
 *
 *   make bench-fleet-sizes    # BENCH_SIZES=1000,3000,10000 BENCH_REPLICA_SIZES=10000
 *   BENCH_SIZES_TABLE_ONLY=1 node dist/bench/fleet/fleet-sizes.js   # the table from existing results
 */

const SIZES = (process.env.BENCH_SIZES ?? '1000,3000,10000').split(',').map(Number);
/** Sizes also run with two control-plane replicas. */
const REPLICA_SIZES = (process.env.BENCH_REPLICA_SIZES ?? '10000').split(',').filter(Boolean).map(Number);
const BENCH = fileURLToPath(new URL('./fleet-bench.js', import.meta.url));

interface Run {
  agents: number;
  replicas: number;
}

function runOne(r: Run): Promise<number> {
  log(`=== fleet: ${r.agents} agents, ${r.replicas} replica(s) ===`);
  const child = spawn(process.execPath, [BENCH], {
    stdio: 'inherit',
    env: { ...process.env, BENCH_AGENTS: String(r.agents), BENCH_REPLICAS: String(r.replicas) },
  });
  return new Promise((resolve) => child.on('exit', (code) => resolve(code ?? 1)));
}

function load(r: Run): FleetResult | undefined {
  const file = `${RESULTS_DIR}${resultName(r.agents, r.replicas)}.json`;
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as FleetResult) : undefined;
}

async function main(): Promise<void> {
  const runs: Run[] = [...SIZES.map((agents) => ({ agents, replicas: 1 })), ...REPLICA_SIZES.map((agents) => ({ agents, replicas: 2 }))];
  const exits = new Map<string, number>();
  if (process.env.BENCH_SIZES_TABLE_ONLY !== '1')
    for (const r of runs) {
      // A failed size is a result too (e.g. enrollment failures): its column stays empty, the others still run.
      rmSync(`${RESULTS_DIR}${resultName(r.agents, r.replicas)}.json`, { force: true });
      const code = await runOne(r);
      exits.set(resultName(r.agents, r.replicas), code);
      if (code !== 0) log(`fleet ${resultName(r.agents, r.replicas)} failed (exit ${code})`);
    }

  const results = runs.map((r) => ({ run: r, result: load(r) }));
  const cols = results.map(({ run }) => `${run.agents}${run.replicas > 1 ? ` × ${run.replicas} replicas` : ''}`);
  const phase = (res: FleetResult | undefined, name: string) => res?.phases.find((p) => p.name === name);
  const cell = (ms: number | undefined, agents: number) => (ms === undefined ? '—' : `${fmtMs(ms)} (${fmtMs((ms / agents) * 1000)}/1k)`);
  const floorMs = (res: FleetResult | undefined, name: string) => res?.floors.find((f) => f.name === name)?.ms;
  const rows: Array<[string, (res: FleetResult | undefined, agents: number) => string]> = [
    ['setup: register (REST)', (res, n) => cell(res?.registration.durationMs, n)],
    [
      `enroll (≤ ${TARGETS.enrollMs / 1000} s, 0 failed)`,
      (res, n) => (res ? `${cell(res.enroll.durationMs, n)}, ${res.enroll.failed} failed` : '—'),
    ],
    ['open streams', (res, n) => cell(res?.streamsMs, n)],
    [
      `control-plane RSS (≤ ${TARGETS.rssMiB} MiB)`,
      (res) => (res ? `${res.footprint.controlPlaneRssMiB.map((m) => m.toFixed(0)).join(' + ')} MiB` : '—'),
    ],
    [`publish (≤ ${TARGETS.publishMs / 1000} s)`, (res, n) => cell(phase(res, 'publish')?.ackedMs, n)],
    [
      `publish / HSM floor (≤ ${TARGETS.publishPerHsmFloor}×)`,
      (res) => {
        const p = phase(res, 'publish')?.ackedMs;
        const h = floorMs(res, 'HSM wraps');
        return p && h ? `${(p / h).toFixed(2)}×` : '—';
      },
    ],
    [`rotate (≤ ${TARGETS.rotateMs / 1000} s)`, (res, n) => cell(phase(res, 'rotate one value')?.ackedMs, n)],
    [`unpublish (≤ ${TARGETS.unpublishMs / 1000} s)`, (res, n) => cell(phase(res, 'unpublish')?.ackedMs, n)],
    [
      `reconnect after restart (≤ ${TARGETS.reconnectMs / 1000} s), states resent`,
      (res, n) => (res ? `${cell(res.reconnect.ms, n)}, ${res.reconnect.statesResent} resent` : '—'),
    ],
    ...(['publish', 'rotate one value', 'unpublish'] as const).map((name): [string, (res: FleetResult | undefined) => string] => [
      `${name}: CP + PostgreSQL CPU / cluster (≤ ${TARGETS.cpuPerClusterChangeMs} ms)`,
      (res) => {
        const p = phase(res, name);
        return p ? `${p.cpuPerClusterMs.toFixed(2)} ms` : '—';
      },
    ]),
    ['floor: HSM wraps', (res, n) => cell(floorMs(res, 'HSM wraps'), n)],
    ['floor: gRPC stream round trip', (res, n) => cell(floorMs(res, 'gRPC stream round trip'), n)],
    ['floor: gRPC stream open', (res, n) => cell(floorMs(res, 'gRPC stream open'), n)],
    ['floor: BullMQ batches', (res, n) => cell(floorMs(res, 'BullMQ batches'), n)],
  ];
  const md = [
    `bench/fleet across sizes — ${machineLine()}`,
    '',
    'Each column is one `make bench-fleet` run (fresh stack) on this machine; "/1k" is the time per 1,000 clusters, flat when growth is linear.',
    ...(exits.size > 0 ? ['', `Exit codes: ${[...exits].map(([k, c]) => `${k} ${c === 0 ? 'ok' : `failed (${c})`}`).join(', ')}.`] : []),
    '',
    table(
      ['measurement', ...cols],
      rows.map(([name, f]) => [name, ...results.map(({ run, result }) => f(result, run.agents))]),
    ),
  ].join('\n');
  process.stdout.write(`${md}\n`);
  await writeResults('fleet-sizes', { runs: results.map(({ run, result }) => ({ ...run, present: result !== undefined })) }, md);
  if ([...exits.values()].some((c) => c !== 0)) process.exitCode = 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/fleet-sizes failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
