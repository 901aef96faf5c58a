import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as grpc from '@grpc/grpc-js';
import {
  AgentServiceClient,
  AgentServiceService,
  DeliveryMode,
  SecretState,
  type AgentServiceServer,
  type DesiredState,
  type SyncRequest,
  type SyncResponse,
} from '@sigil/agent-protocol';

// The generated sigil.agent.v1 stubs, over a real gRPC connection on loopback. (Transport
// security, enrollment and the control plane's stream logic are tested elsewhere; this checks
// the wire contract of the Sync stream.)

const envelope = Buffer.from('SGE1-bytes-for-the-test');
const state = (generation: bigint, part: number, more: boolean): DesiredState => ({
  generation,
  baseGeneration: generation - 1n,
  part,
  more,
  secrets: [
    {
      projectId: 'p',
      app: 'checkout',
      secret: 'checkout-db',
      secretId: 's',
      version: 3,
      target: { namespace: 'shop', name: 'checkout-db' },
      type: 'Opaque',
      deliveryMode: DeliveryMode.DELIVERY_MODE_ENV,
      consumers: [],
      envelope,
      generation: 41n,
    },
  ],
  unchanged: [{ secretId: 'u', version: 7, generation: 2n ** 60n }],
  clusterKeyEnvelopes: part === 0 ? [Buffer.from('SGK1')] : [],
  secretCount: more ? 0 : 2,
});

describe('sigil.agent.v1 Sync over gRPC', () => {
  const server = new grpc.Server();
  let client: AgentServiceClient;
  const received: SyncRequest[] = [];

  beforeAll(async () => {
    // An echo of the protocol's shape: Hello → a two-part state; Applied → end.
    const impl: Partial<AgentServiceServer> = {
      sync: (call) => {
        call.on('data', (m: SyncRequest) => {
          received.push(m);
          if (m.message?.$case === 'hello') {
            const g = m.message.value.appliedGeneration + 1n;
            call.write({ message: { $case: 'desiredState', value: state(g, 0, true) } } satisfies SyncResponse);
            call.write({ message: { $case: 'desiredState', value: state(g, 1, false) } } satisfies SyncResponse);
          } else if (m.message?.$case === 'applied') call.end();
        });
      },
    };
    server.addService(AgentServiceService, impl as AgentServiceServer);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    client = new AgentServiceClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });

  afterAll(() => {
    client?.close();
    server.forceShutdown();
  });

  it('carries hello, parts and acks both ways: 64-bit generations, bytes, enums and oneofs intact', async () => {
    const stream = client.sync();
    const parts: DesiredState[] = [];
    stream.on('data', (m: SyncResponse) => {
      if (m.message?.$case !== 'desiredState') return;
      parts.push(m.message.value);
      if (!m.message.value.more)
        stream.write({
          message: {
            $case: 'applied',
            value: {
              generation: m.message.value.generation,
              secrets: [
                {
                  target: { namespace: 'shop', name: 'checkout-db' },
                  secretId: 's',
                  version: 3,
                  generation: 41n,
                  state: SecretState.SECRET_STATE_CONFLICT,
                  reason: 'Conflict',
                  message: '',
                },
              ],
            },
          },
        } satisfies SyncRequest);
    });
    stream.write({ message: { $case: 'hello', value: { appliedGeneration: 2n ** 62n, agentVersion: 'test' } } } satisfies SyncRequest);
    await new Promise((resolve, reject) => {
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    expect(parts.map((p) => [p.generation, p.part, p.more])).toEqual([
      [2n ** 62n + 1n, 0, true],
      [2n ** 62n + 1n, 1, false],
    ]);
    expect(parts[0]!.baseGeneration).toBe(2n ** 62n);
    expect(parts[0]!.secrets[0]).toMatchObject({
      version: 3,
      deliveryMode: DeliveryMode.DELIVERY_MODE_ENV,
      consumers: [],
      target: { namespace: 'shop', name: 'checkout-db' },
    });
    expect(Buffer.from(parts[0]!.secrets[0]!.envelope).equals(envelope)).toBe(true);
    expect(parts[0]!.unchanged).toEqual([{ secretId: 'u', version: 7, generation: 2n ** 60n }]);
    expect(parts[0]!.clusterKeyEnvelopes.map((e) => Buffer.from(e).toString())).toEqual(['SGK1']);
    expect(parts[1]!.secretCount).toBe(2);
    expect(received.map((m) => m.message?.$case)).toEqual(['hello', 'applied']);
    const applied = received[1]!.message;
    expect(applied?.$case === 'applied' && applied.value.secrets[0]!.state).toBe(SecretState.SECRET_STATE_CONFLICT);
  });
});
