import { constants, createCipheriv, generateKeyPairSync, publicEncrypt, randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { credentials, Metadata, Server, ServerCredentials, status, type handleUnaryCall, type ServerDuplexStream } from '@grpc/grpc-js';
import {
  AgentServiceClient,
  AgentServiceService,
  DesiredState,
  RETRY_AFTER_METADATA,
  ReconnectBackoff,
  SecretState,
  type DeepPartial,
  type DesiredSecret,
  type SecretFailureReason,
  type SyncRequest,
  type SyncResponse,
} from '@sigil/agent-protocol';
import { encodeClusterKeyEnvelope, encodeSecretEnvelope, encodeSecretPayload, valueAad } from '@sigil/envelope';
import { MemorySink } from './memory-sink.js';
import { SecretSync } from './secret-sync.js';
import { SyncSession } from './session.js';

// SyncSession and SecretSync against a real grpc-js server in this process that plays the
// control plane's side of Sync from a script: what it sends, and what it records receiving.

const agentKey = generateKeyPairSync('rsa', { modulusLength: 2048 });
const clusterKey = randomBytes(32);
const keyEnvelope = encodeClusterKeyEnvelope({
  clusterKeyVersion: 1,
  oaepHash: 'sha256',
  wrappedKey: publicEncrypt({ key: agentKey.publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, clusterKey),
});

/** A DesiredSecret sealed for this agent, as the control plane builds it. */
function sealed(name: string, version: number, generation: bigint, value: string): DesiredSecret {
  const ctx = { projectId: 'p1', app: 'shop', secret: name, secretId: `id-${name}`, version };
  const dek = randomBytes(32);
  const kwp = createCipheriv('id-aes256-wrap-pad', clusterKey, Buffer.from('a65959a6', 'hex'));
  const wrappedDek = Buffer.concat([kwp.update(dek), kwp.final()]);
  const iv = randomBytes(12);
  const gcm = createCipheriv('aes-256-gcm', dek, iv);
  gcm.setAAD(valueAad(ctx));
  const payload = encodeSecretPayload(new Map([['VALUE', Buffer.from(value)]]));
  const ciphertext = Buffer.concat([gcm.update(payload), gcm.final(), gcm.getAuthTag()]);
  return {
    ...ctx,
    target: { namespace: 'shop', name },
    type: 'Opaque',
    deliveryMode: 1,
    consumers: [],
    envelope: encodeSecretEnvelope({ clusterKeyVersion: 1, wrappedDek, iv, ciphertext }),
    generation,
  };
}

const ref = (s: DesiredSecret) => ({ secretId: s.secretId, version: s.version, generation: s.generation });

/** One Sync stream as the scripted server sees it. */
class ServerStream {
  readonly received: SyncRequest[] = [];
  private readonly waiters: Array<() => void> = [];
  constructor(readonly call: ServerDuplexStream<SyncRequest, SyncResponse>) {
    call.on('data', (m: SyncRequest) => {
      this.received.push(m);
      for (const w of this.waiters.splice(0)) w();
    });
    call.on('error', () => undefined);
  }

  /** Waits for the n-th message received (1-based). */
  async nth(n: number, timeoutMs = 3_000): Promise<SyncRequest> {
    const until = Date.now() + timeoutMs;
    while (this.received.length < n) {
      if (Date.now() > until) throw new Error(`stream received ${this.received.length} messages, not ${n}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
    return this.received[n - 1]!;
  }

  send(ds: DeepPartial<DesiredState>): void {
    this.call.write({ message: { $case: 'desiredState', value: DesiredState.fromPartial(ds) } });
  }

  fail(code: status, retryAfterMs?: number): void {
    const metadata = new Metadata();
    if (retryAfterMs !== undefined) metadata.set(RETRY_AFTER_METADATA, String(retryAfterMs));
    this.call.emit('error', { code, details: 'scripted', metadata });
  }
}

const unimplemented: handleUnaryCall<unknown, unknown> = (_call, cb) => cb({ code: status.UNIMPLEMENTED });

let server: Server;
let address: string;
const streams: ServerStream[] = [];
const openedAt: number[] = [];

async function stream(n: number, timeoutMs = 5_000): Promise<ServerStream> {
  const until = Date.now() + timeoutMs;
  while (streams.length < n) {
    if (Date.now() > until) throw new Error(`${streams.length} streams opened, not ${n}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return streams[n - 1]!;
}

beforeAll(async () => {
  server = new Server();
  server.addService(AgentServiceService, {
    enroll: unimplemented,
    renewCertificate: unimplemented,
    sync: (call: ServerDuplexStream<SyncRequest, SyncResponse>) => {
      openedAt.push(Date.now());
      streams.push(new ServerStream(call));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  address = `127.0.0.1:${port}`;
});

afterAll(() => server.forceShutdown());

/** An agent with the shared session and sync logic over an in-memory sink. */
function agent(opts: { fail?: (target: string) => SecretFailureReason | undefined; backoff?: ReconnectBackoff } = {}) {
  const client = new AgentServiceClient(address, credentials.createInsecure());
  const sink = new MemorySink({ keepValues: true, ...(opts.fail ? { fail: opts.fail } : {}) });
  const secretSync = new SecretSync({ sink, deliveryKey: agentKey.privateKey });
  const states: Array<{ generation: bigint; secrets: string[] }> = [];
  const session = new SyncSession({
    client: () => client,
    agentVersion: 'spec/1',
    backoff: opts.backoff ?? new ReconnectBackoff({ baseMs: 10, capMs: 20 }),
    reconcile: async (state) => {
      states.push({ generation: state.generation, secrets: [...state.secrets.values()].map((s) => s.secret).sort() });
      return (await secretSync.apply(state)).statuses;
    },
  });
  const a = { session, sink, states, secretSync, close: () => (session.stop(), client.close()) };
  running.push(a);
  return a;
}
const running: Array<{ close(): void }> = [];
afterEach(() => {
  for (const a of running.splice(0)) a.close();
  streams.length = 0;
  openedAt.length = 0;
});

const valueOf = (sink: MemorySink, name: string) => sink.secrets.get(`shop/${name}`)?.values?.VALUE;
const applied = (m: SyncRequest) => (m.message?.$case === 'applied' ? m.message.value : undefined);
const stateNames = (m: SyncRequest) =>
  applied(m)
    ?.secrets.map((s) => `${s.target?.name}:${SecretState[s.state]}`)
    .sort();

describe('SyncSession', () => {
  it('says hello, assembles the parts of one generation, applies them once and acknowledges with every status', async () => {
    const a = agent();
    a.session.start();
    const s = await stream(1);
    expect(await s.nth(1)).toEqual({ message: { $case: 'hello', value: { appliedGeneration: 0n, agentVersion: 'spec/1' } } });
    const [x, y, z] = [sealed('x', 1, 3n, 'vx'), sealed('y', 1, 2n, 'vy'), sealed('z', 2, 3n, 'vz')];
    s.send({ generation: 3n, part: 0, more: true, secrets: [x], clusterKeyEnvelopes: [keyEnvelope] });
    s.send({ generation: 3n, part: 1, more: true, secrets: [y] });
    await new Promise((r) => setTimeout(r, 50));
    expect(a.states).toEqual([]); // nothing is acted on before the last part
    s.send({ generation: 3n, part: 2, more: false, secrets: [z], secretCount: 3 });
    const ack = applied(await s.nth(2));
    expect(ack?.generation).toBe(3n);
    expect(stateNames(s.received[1]!)).toEqual(['x:SECRET_STATE_APPLIED', 'y:SECRET_STATE_APPLIED', 'z:SECRET_STATE_APPLIED']);
    expect(a.states).toEqual([{ generation: 3n, secrets: ['x', 'y', 'z'] }]);
    expect([valueOf(a.sink, 'x'), valueOf(a.sink, 'y'), valueOf(a.sink, 'z')]).toEqual(['vx', 'vy', 'vz']);
    expect(a.session.appliedGeneration).toBe(3n);
  });

  it('abandons an unfinished sequence when a part 0 of another generation arrives', async () => {
    const a = agent();
    a.session.start();
    const s = await stream(1);
    await s.nth(1);
    s.send({ generation: 4n, part: 0, more: true, secrets: [sealed('old', 1, 4n, 'v')], clusterKeyEnvelopes: [keyEnvelope] });
    s.send({
      generation: 5n,
      part: 0,
      more: false,
      secrets: [sealed('new', 1, 5n, 'v')],
      clusterKeyEnvelopes: [keyEnvelope],
      secretCount: 1,
    });
    expect(applied(await s.nth(2))?.generation).toBe(5n);
    // A late part of the abandoned generation is ignored, not assembled into anything.
    s.send({ generation: 4n, part: 1, more: false, secrets: [sealed('late', 1, 4n, 'v')], secretCount: 2 });
    await new Promise((r) => setTimeout(r, 100));
    expect(a.states).toEqual([{ generation: 5n, secrets: ['new'] }]);
    expect([...a.sink.secrets.keys()]).toEqual(['shop/new']);
  });

  it('applies a delta against the held state: only what changed is written and reported; what is gone is deleted', async () => {
    const a = agent();
    a.session.start();
    const s = await stream(1);
    await s.nth(1);
    const [x, y, gone] = [sealed('x', 1, 1n, 'x1'), sealed('y', 1, 1n, 'y1'), sealed('gone', 1, 1n, 'g1')];
    s.send({ generation: 1n, part: 0, secrets: [x, y, gone], clusterKeyEnvelopes: [keyEnvelope], secretCount: 3 });
    await s.nth(2);
    const writtenX = a.sink.secrets.get('shop/x');
    const y2 = sealed('y', 2, 2n, 'y2');
    s.send({ generation: 2n, baseGeneration: 1n, part: 0, more: true, secrets: [y2], clusterKeyEnvelopes: [keyEnvelope] });
    s.send({ generation: 2n, baseGeneration: 1n, part: 1, unchanged: [ref(x)], secretCount: 2 });
    const ack = applied(await s.nth(3));
    expect(ack?.generation).toBe(2n);
    expect(stateNames(s.received[2]!)).toEqual(['gone:SECRET_STATE_DELETED', 'y:SECRET_STATE_APPLIED']);
    expect(a.states[1]).toEqual({ generation: 2n, secrets: ['x', 'y'] });
    expect(valueOf(a.sink, 'y')).toBe('y2');
    expect(a.sink.secrets.get('shop/x')).toBe(writtenX); // not rewritten
    expect(a.sink.secrets.has('shop/gone')).toBe(false);
  });

  it('asks for a resync when an unchanged entry is not what it holds, and applies the complete state that answers', async () => {
    const a = agent();
    a.session.start();
    const s = await stream(1);
    await s.nth(1);
    const x = sealed('x', 1, 1n, 'x1');
    s.send({ generation: 1n, part: 0, secrets: [x], clusterKeyEnvelopes: [keyEnvelope], secretCount: 1 });
    await s.nth(2);
    // The control plane believes the agent holds version 2.
    s.send({ generation: 2n, baseGeneration: 1n, part: 0, unchanged: [{ ...ref(x), version: 2 }], secretCount: 1 });
    expect((await s.nth(3)).message?.$case).toBe('resync');
    const x2 = sealed('x', 2, 2n, 'x2');
    s.send({ generation: 2n, part: 0, secrets: [x2], clusterKeyEnvelopes: [keyEnvelope], secretCount: 1 });
    expect(applied(await s.nth(4))?.generation).toBe(2n);
    expect(a.states.map((st) => st.generation)).toEqual([1n, 2n]);
    expect(valueOf(a.sink, 'x')).toBe('x2');
  });

  it('asks for a resync when a delta does not add up to secret_count, or is against a base it does not hold', async () => {
    const a = agent();
    a.session.start();
    const s = await stream(1);
    await s.nth(1);
    // Against a base it never held (it holds nothing).
    s.send({
      generation: 6n,
      baseGeneration: 5n,
      part: 0,
      secrets: [sealed('x', 1, 6n, 'v')],
      clusterKeyEnvelopes: [keyEnvelope],
      secretCount: 1,
    });
    expect((await s.nth(2)).message?.$case).toBe('resync');
    const x = sealed('x', 1, 6n, 'v');
    s.send({ generation: 6n, part: 0, secrets: [x], clusterKeyEnvelopes: [keyEnvelope], secretCount: 1 });
    await s.nth(3);
    // One secret is missing from the delta: it would be deleted if taken as the whole state.
    s.send({ generation: 7n, baseGeneration: 6n, part: 0, secrets: [sealed('y', 1, 7n, 'v')], secretCount: 2 });
    expect((await s.nth(4)).message?.$case).toBe('resync');
    expect(a.states.map((st) => st.generation)).toEqual([6n]);
    expect(a.sink.secrets.has('shop/x')).toBe(true);
  });

  it('keeps reporting a secret that is not applied, in deltas that do not carry it, until it is', async () => {
    let failing = true;
    const a = agent({ fail: (t) => (failing && t === 'shop/x' ? 'Forbidden' : undefined) });
    a.session.start();
    const s = await stream(1);
    await s.nth(1);
    const [x, y] = [sealed('x', 1, 1n, 'x1'), sealed('y', 1, 1n, 'y1')];
    s.send({ generation: 1n, part: 0, secrets: [x, y], clusterKeyEnvelopes: [keyEnvelope], secretCount: 2 });
    expect(stateNames(await s.nth(2))).toEqual(['x:SECRET_STATE_FAILED', 'y:SECRET_STATE_APPLIED']);
    const y2 = sealed('y', 2, 2n, 'y2');
    s.send({
      generation: 2n,
      baseGeneration: 1n,
      part: 0,
      secrets: [y2],
      unchanged: [ref(x)],
      clusterKeyEnvelopes: [keyEnvelope],
      secretCount: 2,
    });
    expect(stateNames(await s.nth(3))).toEqual(['x:SECRET_STATE_FAILED', 'y:SECRET_STATE_APPLIED']);
    failing = false;
    s.send({
      generation: 3n,
      baseGeneration: 2n,
      part: 0,
      unchanged: [ref(x), ref(y2)],
      clusterKeyEnvelopes: [keyEnvelope],
      secretCount: 2,
    });
    expect(stateNames(await s.nth(4))).toEqual(['x:SECRET_STATE_APPLIED']);
    s.send({
      generation: 4n,
      baseGeneration: 3n,
      part: 0,
      unchanged: [ref(x), ref(y2)],
      clusterKeyEnvelopes: [keyEnvelope],
      secretCount: 2,
    });
    expect(stateNames(await s.nth(5))).toEqual([]);
  });

  it('sends statuses found between states at the acknowledged generation', async () => {
    const a = agent();
    a.session.start();
    const s = await stream(1);
    await s.nth(1);
    s.send({ generation: 9n, part: 0, secrets: [sealed('x', 1, 9n, 'v')], clusterKeyEnvelopes: [keyEnvelope], secretCount: 1 });
    await s.nth(2);
    a.session.report([
      {
        target: { namespace: 'shop', name: 'x' },
        secretId: 'id-x',
        version: 1,
        generation: 9n,
        state: SecretState.SECRET_STATE_FAILED,
        reason: 'Forbidden',
        message: '',
      },
    ]);
    const later = applied(await s.nth(3));
    expect(later?.generation).toBe(9n);
    expect(later?.secrets.map((st) => st.reason)).toEqual(['Forbidden']);
  });

  it('reconnects after UNAVAILABLE with the held generation in its hello, and is sent nothing more when it is current', async () => {
    const a = agent();
    a.session.start();
    const s1 = await stream(1);
    await s1.nth(1);
    s1.send({ generation: 12n, part: 0, secrets: [sealed('x', 1, 12n, 'v')], clusterKeyEnvelopes: [keyEnvelope], secretCount: 1 });
    await s1.nth(2);
    s1.fail(status.UNAVAILABLE);
    const s2 = await stream(2);
    expect(await s2.nth(1)).toEqual({ message: { $case: 'hello', value: { appliedGeneration: 12n, agentVersion: 'spec/1' } } });
    // A delta against the held generation applies on the new stream (the held state survived).
    s2.send({
      generation: 13n,
      baseGeneration: 12n,
      part: 0,
      unchanged: [ref(sealed('x', 1, 12n, 'v'))],
      clusterKeyEnvelopes: [keyEnvelope],
      secretCount: 1,
    });
    expect(applied(await s2.nth(2))?.generation).toBe(13n);
    expect(a.states.map((st) => st.generation)).toEqual([12n, 13n]);
  });

  it('backs off between reconnects: the server’s retry window, else full-jitter exponential', async () => {
    // random() = 1: every delay is its window's upper bound.
    const a = agent({ backoff: new ReconnectBackoff({ baseMs: 100, capMs: 10_000, random: () => 0.999 }) });
    a.session.start();
    (await stream(1)).fail(status.UNAVAILABLE, 600);
    (await stream(2)).fail(status.UNAVAILABLE);
    (await stream(3)).fail(status.UNAVAILABLE);
    await stream(4);
    const gaps = [openedAt[1]! - openedAt[0]!, openedAt[2]! - openedAt[1]!, openedAt[3]! - openedAt[2]!];
    expect(gaps[0]).toBeGreaterThanOrEqual(590); // the retry window
    expect(gaps[1]).toBeGreaterThanOrEqual(190); // 100·2^1
    expect(gaps[1]).toBeLessThan(590);
    expect(gaps[2]).toBeGreaterThanOrEqual(390); // 100·2^2
  });

  it('stops reconnecting when onEnd says so (a refused agent)', async () => {
    const client = new AgentServiceClient(address, credentials.createInsecure());
    const ends: Array<number | undefined> = [];
    const session = new SyncSession({
      client: () => client,
      agentVersion: 'spec/1',
      reconcile: () => Promise.resolve([]),
      onEnd: (err) => {
        ends.push(err?.code);
        return err?.code === status.PERMISSION_DENIED ? 'stop' : undefined;
      },
    });
    running.push({ close: () => (session.stop(), client.close()) });
    session.start();
    const s = await stream(1);
    await s.nth(1);
    s.fail(status.PERMISSION_DENIED);
    await new Promise((r) => setTimeout(r, 200));
    expect(ends).toEqual([status.PERMISSION_DENIED]);
    expect(session.running).toBe(false);
    expect(streams).toHaveLength(1);
  });
});
