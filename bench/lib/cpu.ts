import { readdirSync, readFileSync } from 'node:fs';

/**
 * CPU time by role across every process on the machine, from /proc (user + system ticks):
 * where a phase's CPU went, e.g. control plane vs PostgreSQL vs the simulated agents.
 */
export type Roles = Record<string, (pid: number, comm: string) => boolean>;

const TICK_MS = 10; // USER_HZ is 100 on Linux

function ticksByRole(roles: Roles): Map<string, number> {
  const out = new Map<string, number>();
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
    const ticks = Number(fields[11]) + Number(fields[12]); // utime + stime
    const role = Object.entries(roles).find(([, match]) => match(pid, comm))?.[0] ?? 'other';
    out.set(role, (out.get(role) ?? 0) + ticks);
  }
  return out;
}

/** Starts counting; the returned function gives CPU milliseconds per role since then. */
export function cpuMeter(roles: Roles): () => Record<string, number> {
  const before = ticksByRole(roles);
  return () => {
    const after = ticksByRole(roles);
    return Object.fromEntries<number>(
      [...after]
        .map(([role, t]): [string, number] => [role, Math.max(0, t - (before.get(role) ?? 0)) * TICK_MS])
        .sort((a, b) => Number(b[1]) - Number(a[1])),
    );
  };
}
