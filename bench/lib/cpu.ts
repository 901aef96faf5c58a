import { readdirSync, readFileSync } from 'node:fs';

/**
 * CPU time by role across every process on the machine, from /proc (user + system ticks):
 * where a phase's CPU went, e.g. control plane vs PostgreSQL vs the simulated agents.
 */
export type Roles = Record<string, (pid: number, comm: string) => boolean>;

const TICK_MS = 10; // USER_HZ is 100 on Linux

/** utime + stime ticks and command name of every process now. */
function ticksByPid(): Map<number, { comm: string; ticks: number }> {
  const out = new Map<number, { comm: string; ticks: number }>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    out.set(pid, { comm, ticks: Number(fields[11]) + Number(fields[12]) });
  }
  return out;
}

/**
 * Starts counting; the returned function gives CPU milliseconds per role since then. Counted
 * per process, so a process started meanwhile (a restarted control plane) counts from zero;
 * roles are matched when the function is called. What a process used before it exited inside
 * the window is not seen (/proc has forgotten it).
 */
export function cpuMeter(roles: Roles): () => Record<string, number> {
  const before = ticksByPid();
  return () => {
    const out = new Map<string, number>();
    for (const [pid, { comm, ticks }] of ticksByPid()) {
      const was = before.get(pid);
      const delta = was && was.comm === comm ? ticks - was.ticks : ticks;
      const role = Object.entries(roles).find(([, match]) => match(pid, comm))?.[0] ?? 'other';
      out.set(role, (out.get(role) ?? 0) + Math.max(0, delta));
    }
    return Object.fromEntries<number>([...out].map(([role, t]): [string, number] => [role, t * TICK_MS]).sort((a, b) => b[1] - a[1]));
  };
}

/** utime + stime, and cutime + cstime (children it waited for), of one process; undefined if gone. */
function ownAndReaped(pid: number): { ticks: number; ppid: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]), ppid: Number(f[1]) };
  } catch {
    return undefined;
  }
}

/**
 * CPU milliseconds of a process and its direct children since the call, including children that
 * started and exited inside the window: the parent's cutime/cstime count those it reaped. What
 * cpuMeter misses for a server that forks a short-lived process per connection (PostgreSQL's
 * postmaster and its backends, when every client connects anew).
 */
export function treeCpuMeter(rootPid: number): () => number {
  const total = (): number => {
    let ticks = ownAndReaped(rootPid)?.ticks ?? 0;
    for (const [pid, { ticks: t }] of ticksByPid()) if (pid !== rootPid && ownAndReaped(pid)?.ppid === rootPid) ticks += t;
    return ticks;
  };
  const before = total();
  return () => Math.max(0, total() - before) * TICK_MS;
}
