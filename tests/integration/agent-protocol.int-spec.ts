import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as grpc from '@grpc/grpc-js';
import {
  AgentServiceClient,
  AgentServiceService,
  DeliveryMode,
  type AgentServiceServer,
  type GetDesiredStateResponse,
  type WatchResponse,
} from '@sigil/agent-protocol';

// The generated sigil.agent.v1 stubs, over a real gRPC connection on loopback. (Transport
// security and enrollment are the agent-protocol feature's; this checks the wire contract.)

const envelope = Buffer.from('SGE1-bytes-for-the-test');
const desired: GetDesiredStateResponse = {
  generation: 42n,
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
      envelope,
      generation: 41n,
    },
  ],
  clusterKeyEnvelopes: [Buffer.from('SGK1')],
  nextPageToken: '',
};

describe('sigil.agent.v1 over gRPC', () => {
  const server = new grpc.Server();
  let client: AgentServiceClient;

  beforeAll(async () => {
    const impl: Partial<AgentServiceServer> = {
      getDesiredState: (call, callback) => callback(null, { ...desired, generation: call.request.generation + 42n }),
      watch: (call) => {
        const w = (g: bigint): WatchResponse => ({ desiredGeneration: g });
        call.write(w(call.request.appliedGeneration + 1n));
        call.write(w(call.request.appliedGeneration + 2n));
        call.end();
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

  it('carries the desired state: 64-bit generations, bytes and enums intact', async () => {
    const res = await new Promise<GetDesiredStateResponse>((resolve, reject) =>
      client.getDesiredState({ generation: 0n, pageToken: '' }, (err, r) => (err ? reject(err) : resolve(r))),
    );
    expect(res.generation).toBe(42n);
    expect(res.secrets[0]).toMatchObject({
      version: 3,
      deliveryMode: DeliveryMode.DELIVERY_MODE_ENV,
      target: { namespace: 'shop', name: 'checkout-db' },
    });
    expect(Buffer.from(res.secrets[0]!.envelope).equals(envelope)).toBe(true);
    const big = await new Promise<GetDesiredStateResponse>((resolve, reject) =>
      client.getDesiredState({ generation: 2n ** 60n, pageToken: '' }, (err, r) => (err ? reject(err) : resolve(r))),
    );
    expect(big.generation).toBe(2n ** 60n + 42n);
  });

  it('streams Watch notifications', async () => {
    const seen: bigint[] = [];
    const stream = client.watch({ appliedGeneration: 7n, agentVersion: 'test' });
    stream.on('data', (m: WatchResponse) => seen.push(m.desiredGeneration));
    await new Promise((resolve, reject) => {
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    expect(seen).toEqual([8n, 9n]);
  });
});
