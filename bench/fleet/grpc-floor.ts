import { readFileSync } from 'node:fs';
import { credentials, makeGenericClientConstructor, Server, ServerCredentials, type ServiceDefinition } from '@grpc/grpc-js';
import { now } from './sim-protocol.js';

/**
 * The gRPC floor's two halves (see floors.ts): `server <key> <cert>` answers Ping at once;
 * `client <cert> <port> <n>` opens n TLS connections, says so, and on "go" makes one call on
 * each, then reports when the last answer came.
 */

const identity = (b: Buffer) => b;
const SERVICE: ServiceDefinition = {
  ping: {
    path: '/sigil.bench.Floor/Ping',
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};

const [mode, ...args] = process.argv.slice(2);

if (mode === 'server') {
  const [key, cert] = args as [string, string];
  const server = new Server();
  server.addService(SERVICE, { ping: (_call: unknown, cb: (e: null, r: Buffer) => void) => cb(null, Buffer.alloc(8)) });
  server.bindAsync(
    '127.0.0.1:0',
    ServerCredentials.createSsl(null, [{ private_key: readFileSync(key), cert_chain: readFileSync(cert) }]),
    (err, port) => {
      if (err) throw err;
      process.send!({ port });
    },
  );
} else {
  const [cert, port, n] = args as [string, string, string];
  const Client = makeGenericClientConstructor(SERVICE, 'Floor');
  const creds = credentials.createSsl(readFileSync(cert));
  const clients = Array.from(
    { length: Number(n) },
    () =>
      new Client(`localhost:${port}`, creds, { 'grpc.use_local_subchannel_pool': 1 }) as unknown as {
        waitForReady(deadline: number, cb: (e?: Error) => void): void;
        ping(req: Buffer, cb: (e: Error | null) => void): void;
      },
  );
  // Connect in batches so the server's accept queue is not the thing measured.
  for (let i = 0; i < clients.length; i += 200) {
    await Promise.all(
      clients
        .slice(i, i + 200)
        .map((c) => new Promise<void>((res, rej) => c.waitForReady(Date.now() + 60_000, (e) => (e ? rej(e) : res())))),
    );
  }
  process.send!('connected');
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
    ).then(() => process.send!({ lastAt }));
  });
}
