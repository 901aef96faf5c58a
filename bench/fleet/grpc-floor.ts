import { readFileSync } from 'node:fs';
import {
  credentials,
  makeGenericClientConstructor,
  Server,
  ServerCredentials,
  type ClientDuplexStream,
  type ServerDuplexStream,
  type ServiceDefinition,
} from '@grpc/grpc-js';
import { now } from './sim-protocol.js';

/**
 * The gRPC floors' processes (see floors.ts), over mTLS as the control plane's agent port does
 * it (P-256 server and client certificates from one CA; the client certificate requested and
 * verified; one TLS connection per client):
 *
 *   server <dir> <downBytes>      Ping answers at once. Sync: counts open streams; on "go" from
 *                                 the parent writes one message of downBytes on every stream and
 *                                 reports when the last stream's answer arrived.
 *   unary <dir> <port> <n>        opens n connections, says so; on "go" one Ping on each.
 *   stream <dir> <port> <n>       opens n connections with one Sync stream each (a hello up
 *                                 first), reports how long opening took; answers every message
 *                                 from the server with one small message.
 */

const identity = (b: Buffer) => b;
const codec = { requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity };
const SERVICE: ServiceDefinition = {
  ping: { path: '/sigil.bench.Floor/Ping', requestStream: false, responseStream: false, ...codec },
  sync: { path: '/sigil.bench.Floor/Sync', requestStream: true, responseStream: true, ...codec },
};
/** The control plane's agent-server options (apps/control-plane/src/agent-api/agent-grpc.server.ts). */
const SERVER_OPTIONS = {
  'grpc.keepalive_time_ms': 60_000,
  'grpc.keepalive_timeout_ms': 20_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 20_000,
  'grpc.max_concurrent_streams': 32,
};
/** Connections opened at a time per client process, so the server's accept queue is not what is measured. */
const CONNECT_BATCH = 200;

type FloorClient = {
  waitForReady(deadline: number, cb: (e?: Error) => void): void;
  ping(req: Buffer, cb: (e: Error | null) => void): void;
  sync(): ClientDuplexStream<Buffer, Buffer>;
};

const [mode, dir, ...args] = process.argv.slice(2) as [string, string, ...string[]];
const pem = (name: string) => readFileSync(`${dir}/${name}.pem`);

if (mode === 'server') {
  const down = Buffer.alloc(Number(args[0] ?? 4096), 7);
  const server = new Server(SERVER_OPTIONS);
  const streams = new Set<ServerDuplexStream<Buffer, Buffer>>();
  let acked = 0;
  let expected = 0;
  let lastAt = 0;
  server.addService(SERVICE, {
    ping: (_call: unknown, cb: (e: null, r: Buffer) => void) => cb(null, Buffer.alloc(8)),
    sync: (call: ServerDuplexStream<Buffer, Buffer>) => {
      let hello = true;
      call.on('data', () => {
        if (hello) {
          hello = false;
          streams.add(call);
          return;
        }
        acked++;
        lastAt = now();
        if (acked === expected) process.send!({ type: 'acked', lastAt });
      });
      call.on('error', () => streams.delete(call));
      call.on('end', () => {
        streams.delete(call);
        call.end();
      });
    },
  });
  process.on('message', (m: { type: string }) => {
    if (m.type === 'count') process.send!({ type: 'count', streams: streams.size });
    if (m.type === 'go') {
      expected = streams.size;
      acked = 0;
      const startedAt = now();
      for (const s of streams) s.write(down);
      process.send!({ type: 'sent', startedAt });
    }
  });
  server.bindAsync(
    '127.0.0.1:0',
    ServerCredentials.createSsl(pem('ca'), [{ private_key: pem('server-key'), cert_chain: pem('server-cert') }], true),
    (err, port) => {
      if (err) throw err;
      process.send!({ type: 'port', port });
    },
  );
} else {
  const [port, n] = args as [string, string];
  const Client = makeGenericClientConstructor(SERVICE, 'Floor');
  const creds = credentials.createSsl(pem('ca'), pem('client-key'), pem('client-cert'));
  // A channel of its own per client: its own TCP and TLS connection, as every agent has.
  const clients = Array.from(
    { length: Number(n) },
    () => new Client(`localhost:${port}`, creds, { 'grpc.use_local_subchannel_pool': 1 }) as unknown as FloorClient,
  );
  const ready = (c: FloorClient) => new Promise<void>((res, rej) => c.waitForReady(Date.now() + 120_000, (e) => (e ? rej(e) : res())));
  const startedAt = now();
  for (let i = 0; i < clients.length; i += CONNECT_BATCH) {
    const batch = clients.slice(i, i + CONNECT_BATCH);
    await Promise.all(batch.map(ready));
    if (mode === 'stream')
      for (const c of batch) {
        const s = c.sync();
        s.on('data', () => s.write(Buffer.alloc(64, 1))); // the ack
        s.on('error', () => undefined);
        s.write(Buffer.alloc(16, 2)); // the hello
      }
  }
  process.send!({ type: 'connected', startedAt, lastAt: now() });
  if (mode === 'unary')
    process.once('message', () => {
      let lastAt = 0;
      void Promise.all(
        clients.map(
          (c) =>
            new Promise<void>((res, rej) =>
              c.ping(Buffer.alloc(8), (e) => {
                lastAt = Math.max(lastAt, now());
                if (e) rej(e);
                else res();
              }),
            ),
        ),
      ).then(() => process.send!({ type: 'done', lastAt }));
    });
}
