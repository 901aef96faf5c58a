import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { once } from 'node:events';
import { readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** Helpers for the local services `make up` and the test harness start (PostgreSQL, Redis). */

export async function freeLoopbackPort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A process left behind by a previous run that was killed before it could clean up
 * (SIGKILL of the control plane) is stopped, so a restart never finds its port or data
 * directory locked.
 */
export async function stopLeftover(pidFile: string, signal: NodeJS.Signals, timeoutMs = 15_000): Promise<boolean> {
  let pid: number;
  try {
    pid = Number.parseInt((await readFile(pidFile, 'utf8')).split('\n')[0] ?? '', 10);
  } catch {
    return false;
  }
  if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid || !isAlive(pid)) return false;
  process.kill(pid, signal);
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid) && Date.now() < deadline) await sleep(100);
  if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  await rm(pidFile, { force: true });
  return true;
}

/** Polls `probe` until it resolves true, or throws with `describe()` after `timeoutMs`. */
export async function waitFor(
  what: string,
  probe: () => Promise<boolean>,
  opts: { timeoutMs: number; child?: ChildProcess; describe?: () => string },
): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    if (opts.child && opts.child.exitCode !== null) {
      throw new Error(`${what} exited with code ${opts.child.exitCode}${opts.describe ? `: ${opts.describe()}` : ''}`);
    }
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline)
      throw new Error(`${what} not ready after ${opts.timeoutMs} ms${opts.describe ? `: ${opts.describe()}` : ''}`);
    await sleep(100);
  }
}

/** Sends `signal`, waits for exit, escalates to SIGKILL after `timeoutMs`. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals, timeoutMs = 15_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The environment local services get: only what they need. Never the control plane's own
 * (which may hold an HSM PIN or a bootstrap token; a child's environment is readable through
 * /proc by its user).
 */
export function serviceEnv(): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C' };
}

export function spawnService(command: string, args: string[], options: SpawnOptions): ChildProcess {
  // Same process group as the control plane: Ctrl-C in a terminal reaches the service too,
  // and the control plane's own shutdown stops it explicitly.
  return spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], env: serviceEnv(), ...options });
}

/** Keeps the last few KiB of a child's stderr, to explain a failed start. */
export function tailOf(child: ChildProcess, limit = 4096): () => string {
  let buf = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    buf = (buf + chunk.toString('utf8')).slice(-limit);
  });
  return () => buf.trim();
}
