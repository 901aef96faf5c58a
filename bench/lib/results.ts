import { mkdir, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describeMachine, type MachineDescription } from './machine.js';

/** bench/results in the source tree (the compiled bench runs from dist/bench). */
export const RESULTS_DIR = fileURLToPath(new URL('../../../bench/results/', import.meta.url));

export function machineLine(m: MachineDescription = describeMachine()): string {
  return `${m.cpu}, ${m.cores} CPUs, ${m.memoryGiB} GiB, Node ${m.node}, Linux ${m.kernel}, ${m.date}`;
}

/** Writes `<name>.json` (data + machine) and `<name>.md` (the markdown as printed). */
export async function writeResults(name: string, data: object, markdown: string): Promise<void> {
  await mkdir(RESULTS_DIR, { recursive: true });
  await writeFile(`${RESULTS_DIR}${name}.json`, `${JSON.stringify({ machine: describeMachine(), ...data }, null, 2)}\n`);
  await writeFile(`${RESULTS_DIR}${name}.md`, markdown.endsWith('\n') ? markdown : `${markdown}\n`);
}

export const fmtMs = (ms: number): string => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`);
export const mark = (ok: boolean): string => (ok ? '✓' : '✗');

export function table(head: string[], rows: Array<Array<string | number>>): string {
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

export const log = (msg: string): void => void process.stderr.write(`[bench] ${msg}\n`);
