import { describeMachine, type MachineDescription } from '../lib/machine.js';
import { machineLine, mark } from '../lib/results.js';
import { stats, type Stats } from './latency-stats.js';

/** Milestones of one rotation, in ms after the REST request was sent (probes in Redis). */
export interface Probe {
  added?: number;
  active?: number;
  built?: number;
}

/** One rotation: until the watch saw it, and until the REST request answered. */
export interface Sample {
  total: number;
  rest: number;
  probe: Probe;
}

/** How the run was made, for the report. */
export interface RunSettings {
  iterations: number;
  warmup: number;
  pauseMs: readonly [number, number];
  targets: { p50: number; p99: number };
  loadAverage: { before: number; after: number };
}

/** The statistics of a run: end to end, the floor, and per stage where every probe fired. */
export function summarize(settings: RunSettings, samples: Sample[], floor: Array<{ total: number; put: number }>): Results {
  const endToEnd = stats(samples.map((s) => s.total));
  const floorStats = stats(floor.map((s) => s.total));
  const probed = samples.filter((s) => s.probe.added !== undefined && s.probe.active !== undefined && s.probe.built !== undefined);
  const diff = (f: (s: Sample, p: Required<Probe>) => number) => stats(probed.map((s) => f(s, s.probe as Required<Probe>)));
  if (probed.length < samples.length)
    process.stderr.write(
      `[bench/latency] ${samples.length - probed.length} rotations missed a probe; stages use the other ${probed.length}\n`,
    );
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    machine: describeMachine(),
    ...settings,
    endToEnd,
    restOnly: stats(samples.map((s) => s.rest)),
    floor: { ...floorStats, putP50: stats(floor.map((s) => s.put)).p50 },
    ratio: endToEnd.p50 / floorStats.p50,
    stages: probed.length
      ? [
          { stage: 'REST: HTTP, auth, HSM seal, PostgreSQL commit → delivery job added', stats: diff((_s, p) => p.added) },
          { stage: 'queue: job added → picked up by a worker', stats: diff((_s, p) => p.active - p.added) },
          { stage: 'build: HSM wrap, snapshot, generation → agent stream pushed', stats: diff((_s, p) => p.built - p.active) },
          { stage: 'agent: state on the Sync stream → decrypt, kube GET + PUT → watch event', stats: diff((s, p) => s.total - p.built) },
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
      endToEnd: samples.map((s) => round(s.total)),
      restOnly: samples.map((s) => round(s.rest)),
      floor: floor.map((s) => round(s.total)),
    },
  };
}

export interface Results {
  machine: MachineDescription;
  /** 1-minute load average before and after the measurement: other work on the machine shows here. */
  loadAverage: { before: number; after: number };
  iterations: number;
  warmup: number;
  pauseMs: readonly [number, number];
  targets: { p50: number; p99: number };
  endToEnd: Stats;
  restOnly: Stats;
  floor: Stats & { putP50: number };
  ratio: number;
  stages: Array<{ stage: string; stats: Stats }>;
  milestones: Array<{ milestone: string; stats: Stats }>;
  samples: { endToEnd: number[]; restOnly: number[]; floor: number[] };
}

export function render(r: Results): string {
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
