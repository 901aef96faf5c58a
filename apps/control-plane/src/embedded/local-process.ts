import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { once } from 'node:events';
import { readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** Helpers for the local services `make up` and the test harness start (PostgreSQL, Redis). */

/** Ports handed out by this process: never twice, even once they are free again. */
const handedOut = new Set<number>();

/**
 * A port free on every interface now, for a server started soon after. It is drawn at random
 * below the kernel's ephemeral range: a port the kernel picks (bind to 0) comes from that range,
 * where any outgoing connection made meanwhile may take it as its local port, and a server then
 * fails with EADDRINUSE (seen on a busy machine: an agent in host network crash-looping on a
 * port the test had found free).
 */
export async function freeLoopbackPort(): Promise<number> {
  const [low] = await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').then(
    (r) => r.trim().split(/\s+/).map(Number),
    () => [0],
  );
  const min = 10_000;
  const max = (low ?? 0) - 1;
  if (max - min >= 1_000) {
    for (let i = 0; i < 200; i++) {
      const port = min + randomInt(max - min + 1);
      if (handedOut.has(port) || !(await canListen(port))) continue;
      handedOut.add(port);
      return port;
    }
  }
  for (;;) {
    const port = await listenOnce(0, '127.0.0.1');
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

const canListen = (port: number) =>
  listenOnce(port, '0.0.0.0').then(
    () => true,
    () => false,
  );

async function listenOnce(port: number, host: string): Promise<number> {
  const server = net.createServer();
  server.listen(port, host);
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err as Error))]);
  const bound = (server.address() as net.AddressInfo).port;
  server.close();
  await once(server, 'close');
  return bound;
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
