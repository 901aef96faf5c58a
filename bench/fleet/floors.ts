import { fork, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue, Worker } from 'bullmq';
import type { RawLoopInput } from '../hsm/raw-loop.js';
import { rawRate } from '../hsm/raw-rate.js';
import { selfSigned, signedBy } from '../../tests/harness/certificates.js';
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
    // The minimum a batched build needs: each cluster key unwrapped once, each data key once per batch.
    shareDataKeys: true,
  };
  const perSecond = await rawRate(script, input, threads);
  return {
    name: 'HSM wraps',
    what: `${wraps} data-key wraps at the raw pkcs11js rate (${Math.round(perSecond)}/s on ${threads} sessions; per cluster one key unwrap, data keys unwrapped once)`,
    ms: (wraps / perSecond) * 1000,
  };
}

/**
 * No-op jobs through BullMQ on the same Redis: added in bulk, one worker at Sigil's concurrency
 * (16), until all completed. `perJob` clusters per job: 1 is the old per-cluster shape (N jobs),
 * more is the batched builds' shape (N / perJob jobs, each naming its clusters by id).
 */
export async function queueFloor(redisUrl: string, clusters: number, perJob = 1): Promise<Floor> {
  const u = new URL(redisUrl);
  const connection = { host: u.hostname, port: Number(u.port), password: decodeURIComponent(u.password) || undefined };
  const prefix = 'bench-floor';
  const queue = new Queue('noop', { connection, prefix });
  const jobs = Math.ceil(clusters / perJob);
  let done = 0;
  let last = 0;
  const worker = new Worker('noop', () => Promise.resolve(undefined), { connection, prefix, concurrency: 16, autorun: false });
  worker.on('completed', () => {
    done++;
    last = now();
  });
  await queue.waitUntilReady();
  const started = now();
  const all = Array.from({ length: jobs }, (_, j) => {
    const ids = Array.from({ length: Math.min(perJob, clusters - j * perJob) }, () => randomUUID());
    return {
      name: 'build',
      data: perJob === 1 ? { clusterId: ids[0], generation: '1' } : { clusterIds: ids },
      opts: { jobId: `j${j}.1`, removeOnComplete: true, removeOnFail: true },
    };
  });
  for (let i = 0; i < all.length; i += 1_000) await queue.addBulk(all.slice(i, i + 1_000));
  void worker.run();
  while (done < jobs) await new Promise((r) => setTimeout(r, 5));
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  return perJob === 1
    ? {
        name: 'BullMQ fan-out',
        what: `${jobs} no-op jobs, one per cluster, added in bulk and completed (concurrency 16)`,
        ms: last - started,
      }
    : {
        name: 'BullMQ batches',
        what: `${jobs} no-op jobs of ${perJob} cluster ids each, added in bulk and completed (concurrency 16)`,
        ms: last - started,
      };
}

/** A CA, a server certificate (localhost) and one client certificate, P-256, as the agent port uses. */
function floorCertificates(dir: string): void {
  const ca = selfSigned('floor-ca');
  const issued = {
    ca,
    server: signedBy(ca, 'floor-server', ['subjectAltName=DNS:localhost']),
    client: signedBy(ca, 'floor-client', ['extendedKeyUsage=clientAuth']),
  };
  for (const [who, pem] of Object.entries(issued)) {
    writeFileSync(path.join(dir, who === 'ca' ? 'ca.pem' : `${who}-cert.pem`), pem.cert);
    if (who !== 'ca') writeFileSync(path.join(dir, `${who}-key.pem`), pem.key, { mode: 0o600 });
  }
}

/**
 * The gRPC floors, each against a grpc-js server that does nothing else, in its own process
 * (grpc-floor.ts), the clients spread over `processes` processes, mTLS as the agent port does:
 *
 * - stream open: N TLS connections, each with one bidi stream and a hello message on it, from
 *   the first connect until the server holds all N streams (what a reconnect storm costs at least);
 * - stream round trip: on N open streams, one message of `downBytes` down each and one small
 *   answer up, until the last answer arrived (what a publish costs at least in gRPC);
 * - unary round trips: N unary calls, one on each of N connections opened beforehand (Enroll's shape).
 */
export async function grpcFloors(n: number, processes: number, dir: string, downBytes: number): Promise<Floor[]> {
  const certs = path.join(dir, 'floor-certs');
  mkdirSync(certs, { recursive: true });
  floorCertificates(certs);
  const script = fileURLToPath(new URL('./grpc-floor.js', import.meta.url));
  const ipc = { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] as Array<'ignore' | 'inherit' | 'ipc'> };
  const next = <T>(c: ChildProcess, type: string): Promise<T> =>
    new Promise((resolve) => {
      const on = (m: { type: string }) => {
        if (m.type !== type) return;
        c.off('message', on);
        resolve(m as T);
      };
      c.on('message', on);
    });
  const server = fork(script, ['server', certs, String(downBytes)], ipc);
  const per = Math.ceil(n / processes);
  const spawnClients = (mode: string, port: number) =>
    Array.from({ length: Math.min(processes, Math.ceil(n / per)) }, (_, i) =>
      fork(script, [mode, certs, String(port), String(Math.min(per, n - i * per))], ipc),
    );
  const floors: Floor[] = [];
  try {
    const { port } = await next<{ port: number }>(server, 'port');

    const streamClients = spawnClients('stream', port);
    try {
      const connected = await Promise.all(streamClients.map((c) => next<{ startedAt: number }>(c, 'connected')));
      let held = 0;
      while (held < n) {
        const reply = next<{ streams: number }>(server, 'count');
        server.send({ type: 'count' });
        held = (await reply).streams;
        if (held < n) await new Promise((r) => setTimeout(r, 20));
      }
      const openMs = now() - Math.min(...connected.map((c) => c.startedAt));
      floors.push({ name: 'gRPC stream open', what: `${n} mTLS connections with one bidi stream each, ${CONNECT_NOTE}`, ms: openMs });
      const acked = next<{ lastAt: number }>(server, 'acked');
      const sent = next<{ startedAt: number }>(server, 'sent');
      server.send({ type: 'go' });
      const ms = (await acked).lastAt - (await sent).startedAt;
      floors.push({
        name: 'gRPC stream round trip',
        what: `one ${downBytes}-byte message down and a 64-byte answer up on each of ${n} open streams`,
        ms,
      });
    } finally {
      for (const c of streamClients) c.kill('SIGKILL');
    }

    const unaryClients = spawnClients('unary', port);
    try {
      await Promise.all(unaryClients.map((c) => next(c, 'connected')));
      const started = now();
      const finished = unaryClients.map((c) => next<{ lastAt: number }>(c, 'done'));
      for (const c of unaryClients) c.send('go');
      const last = Math.max(...(await Promise.all(finished)).map((m) => m.lastAt));
      floors.push({ name: 'gRPC unary round trips', what: `${n} unary calls, one per open mTLS connection`, ms: last - started });
    } finally {
      for (const c of unaryClients) c.kill('SIGKILL');
    }
  } finally {
    server.kill('SIGKILL');
  }
  return floors;
}

const CONNECT_NOTE = '200 at a time per client process';
