import { readFileSync } from 'node:fs';
import { availableParallelism, cpus, release, totalmem } from 'node:os';

/** The machine a benchmark ran on, as every bench/results file records it. */
export interface MachineDescription {
  /** CPU model name, from /proc/cpuinfo. */
  cpu: string;
  /** Logical CPUs this process may use. */
  cores: number;
  /** Total memory in GiB, one decimal. */
  memoryGiB: number;
  /** Node.js version, e.g. v24.21.0. */
  node: string;
  /** Kernel release (uname -r). */
  kernel: string;
  /** When it was measured (ISO 8601). */
  date: string;
}

export function describeMachine(): MachineDescription {
  let cpu: string | undefined;
  try {
    cpu = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim();
  } catch {
    // not Linux: fall back to what Node reports
  }
  return {
    cpu: cpu ?? cpus()[0]?.model ?? 'unknown CPU',
    cores: availableParallelism(),
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    kernel: release(),
    date: new Date().toISOString(),
  };
}
