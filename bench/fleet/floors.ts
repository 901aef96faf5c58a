import { execFileSync, fork } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker as Thread } from 'node:worker_threads';
import { Queue, Worker } from 'bullmq';
import type { RawLoopInput } from '../hsm/raw-loop.js';
import { now } from './sim-protocol.js';

/**
 * The floors a fan-out is compared with, each measured in the same run on the same machine:
 * what the HSM, the queue and gRPC alone can do for the same amount of work, with nothing of
 * Sigil in between.
 */

export interface Floor {
  name: string;
  /** What was measured, in words. */
  what: string;
  ms: number;
}

/**
 * Raw PKCS#11 rate of the wrap a delivery needs (unwrap the cluster key and a data key,
 * re-wrap the data key under the cluster key), one pkcs11js session per core, for `wraps` wraps.
 */
export async function hsmFloor(token: { module: string; tokenLabel: string; pinFile: string }, wraps: number): Promise<Floor> {
  const ms = Number(process.env.BENCH_FLOOR_MS ?? 3000);
  const threads = availableParallelism();
  const script = fileURLToPath(new URL('../hsm/raw-loop.js', import.meta.url));
  const input: RawLoopInput = {
    module: token.module,
    tokenLabel: token.tokenLabel,
    pin: readFileSync(token.pinFile, 'utf8').trim(),
    op: 'envelope',
    ms,
    secretsPerCluster: 10,
  };
  const workers = Array.from({ length: threads }, () => new Thread(script, { workerData: input }));
  const counts = await Promise.all(workers.map(async (w) => (await once(w, 'message'))[0] as number));
  await Promise.all(workers.map((w) => w.terminate()));
  const perSecond = counts.reduce((a, b) => a + b, 0) / (ms / 1000);
  return {
    name: 'HSM wraps',
    what: `${wraps} data-key wraps at the raw pkcs11js rate (${Math.round(perSecond)}/s on ${threads} sessions)`,
    ms: (wraps / perSecond) * 1000,
  };
}

/** N no-op jobs through BullMQ on the same Redis: addBulk, one worker at Sigil's concurrency, until all completed. */
export async function queueFloor(redisUrl: string, jobs: number): Promise<Floor> {
  const u = new URL(redisUrl);
  const connection = { host: u.hostname, port: Number(u.port), password: decodeURIComponent(u.password) || undefined };
  const prefix = 'bench-floor';
  const queue = new Queue('noop', { connection, prefix });
  let done = 0;
  let last = 0;
  const worker = new Worker('noop', () => Promise.resolve(undefined), { connection, prefix, concurrency: 16, autorun: false });
  worker.on('completed', () => {
    done++;
    last = now();
  });
  await queue.waitUntilReady();
  const started = now();
  const all = Array.from({ length: jobs }, (_, i) => ({
    name: 'build',
    data: { clusterId: `c${i}`, generation: '1' },
    opts: { jobId: `c${i}.1`, removeOnComplete: true, removeOnFail: true },
  }));
  for (let i = 0; i < all.length; i += 1_000) await queue.addBulk(all.slice(i, i + 1_000));
  void worker.run();
  while (done < jobs) await new Promise((r) => setTimeout(r, 5));
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  return { name: 'BullMQ fan-out', what: `${jobs} no-op jobs added in bulk and completed (concurrency 16)`, ms: last - started };
}

/**
 * N unary round trips, one on each of N TLS connections opened beforehand, to a grpc-js server
 * that answers at once, in its own process; the clients spread over `processes` processes.
 */
export async function grpcFloor(calls: number, processes: number, dir: string): Promise<Floor> {
  const key = path.join(dir, 'floor-key.pem');
  const cert = path.join(dir, 'floor-cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost',
    ],
    { stdio: 'ignore' },
  );
  const script = fileURLToPath(new URL('./grpc-floor.js', import.meta.url));
  const server = fork(script, ['server', key, cert], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const [{ port }] = (await once(server, 'message')) as [{ port: number }];
    const per = Math.ceil(calls / processes);
    const clients = Array.from({ length: processes }, (_, i) =>
      fork(script, ['client', cert, String(port), String(Math.min(per, calls - i * per))], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      }),
    );
    try {
      await Promise.all(clients.map((c) => once(c, 'message'))); // connected
      const started = now();
      const finished = clients.map(async (c) => {
        const [m] = (await once(c, 'message')) as [{ lastAt: number }];
        return m.lastAt;
      });
      for (const c of clients) c.send('go');
      const last = Math.max(...(await Promise.all(finished)));
      return { name: 'gRPC round trips', what: `${calls} unary calls, one per open TLS connection`, ms: last - started };
    } finally {
      for (const c of clients) c.kill('SIGKILL');
    }
  } finally {
    server.kill('SIGKILL');
  }
}
