import { spawn } from 'node:child_process';
import { REPO_ROOT } from './control-plane-process.js';

export interface SigilRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the built `sigil` CLI as a child process, asynchronously (test agents in the calling
 * process must keep answering while a `--wait` blocks), with only PATH and `env` set.
 */
export function runSigil(args: string[], env: Record<string, string>, input = ''): Promise<SigilRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['dist/apps/cli/src/main.js', ...args], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}
