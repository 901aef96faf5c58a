/**
 * Where a process's main thread went during one phase of a bench: the self time of each function
 * and of each package within a window of a `--cpu-prof` profile. The fleet bench logs each phase's
 * window in CLOCK_MONOTONIC microseconds, the clock V8's profiles are stamped with, so
 *
 *   BENCH_CP_NODE_OPTIONS="--cpu-prof --cpu-prof-dir=/tmp/prof" BENCH_AGENTS=3000 make bench-fleet
 *   node dist/bench/fleet/profile-top.js /tmp/prof/CPU.….cpuprofile <from µs> <to µs>
 *
 * prints the phase alone, not the enrollment before it.
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

const [path, fromArg, toArg] = process.argv.slice(2);
if (!path || !fromArg || !toArg) {
  process.stderr.write('usage: profile-top <file.cpuprofile> <from µs> <to µs>  (CLOCK_MONOTONIC, as the fleet bench logs them)\n');
  process.exit(2);
}
const [from, to] = [Number(fromArg), Number(toArg)];
const profile = JSON.parse(readFileSync(path, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parentOf = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);
const isSigil = (n: ProfileNode) => n.callFrame.url.includes('/dist/') && !n.callFrame.url.includes('node_modules');
const label = (n: ProfileNode) =>
  `${n.callFrame.functionName || '(anonymous)'}  ${n.callFrame.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, 'dist/')}:${n.callFrame.lineNumber + 1}`;
/** The Sigil function a sample ran under (itself, or the nearest caller in Sigil's code). */
const sigilCaller = (id: number): string => {
  for (let at: number | undefined = id; at !== undefined; at = parentOf.get(at)) {
    const n = byId.get(at)!;
    if (isSigil(n)) return label(n);
  }
  return '(outside Sigil code)';
};
const perSigilCaller = new Map<string, number>();

const perFunction = new Map<string, number>();
const perPackage = new Map<string, number>();
let t = profile.startTime;
let total = 0;
for (let i = 0; i < profile.samples.length; i++) {
  t += profile.timeDeltas[i]!;
  // A sample's time is the gap to the next one.
  const dt = profile.timeDeltas[i + 1] ?? 0;
  if (t < from || t > to) continue;
  const frame = byId.get(profile.samples[i]!)!.callFrame;
  if (frame.functionName === '(idle)') continue;
  total += dt;
  const where = frame.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, 'dist/');
  const fn = `${frame.functionName || '(anonymous)'}  ${where}:${frame.lineNumber + 1}`;
  perFunction.set(fn, (perFunction.get(fn) ?? 0) + dt);
  const pkg =
    /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(frame.url)?.[1] ??
    (frame.url.startsWith('node:') ? 'node:*' : frame.url ? 'sigil' : frame.functionName);
  perPackage.set(pkg, (perPackage.get(pkg) ?? 0) + dt);
  const caller = sigilCaller(profile.samples[i]!);
  perSigilCaller.set(caller, (perSigilCaller.get(caller) ?? 0) + dt);
}

const ms = (us: number) => `${(us / 1000).toFixed(0).padStart(6)} ms`;
const top = (m: Map<string, number>, n: number) =>
  [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, v]) => `${ms(v)}  ${k}`)
    .join('\n');
process.stdout.write(
  `busy ${ms(total)} of ${ms(to - from)}\n\nby package:\n${top(perPackage, 15)}\n\nby function (self time):\n${top(perFunction, 30)}\n\nby Sigil function (its own time and the libraries it called):\n${top(perSigilCaller, 20)}\n`,
);
