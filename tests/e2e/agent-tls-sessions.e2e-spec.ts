import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { connect as tcpConnect, type Socket } from 'node:net';
import { AGENT_CHANNEL_OPTIONS, AgentServiceClient, agentChannelCredentials } from '@sigil/agent-protocol';
import type { ControlPlaneProcess } from '../harness/control-plane-process.js';
import { eventually } from '../harness/eventually.js';
import { startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import { uniqueName } from '../harness/test-env.js';
import { syncOnce, TestAgent } from '../harness/test-agent.js';

// The agent listener (agent-api/agent-listener.ts) owns TLS in front of grpc-js: sessions resume
// across replicas and restarts with ticket keys derived from the HSM, and handshakes in progress
// are bounded so a reconnect storm is refused cheaply instead of queued until it times out.

async function metric(cp: ControlPlaneProcess, pattern: RegExp): Promise<number> {
  const text = await (await fetch(`${cp.url}/metrics`)).text();
  const m = pattern.exec(text);
  return m ? Number(m[1]) : 0;
}

const resumed = /sigil_agent_tls_sessions_total\{handshake="resumed"[^}]*\} (\d+)/;
const full = /sigil_agent_tls_sessions_total\{handshake="full"[^}]*\} (\d+)/;
const refusedFull = /sigil_agent_connections_refused_total\{reason="handshakes_full"[^}]*\} (\d+)/;
const refusedStalled = /sigil_agent_connections_refused_total\{reason="handshake_stalled"[^}]*\} (\d+)/;

const hostPort = (address: string) => {
  const [host, port] = address.split(':') as [string, string];
  return { host: host === 'localhost' ? '127.0.0.1' : host, port: Number(port) };
};

/** Resolves once the client's channel is connected (its own reconnect backoff retries meanwhile). */
const ready = (client: AgentServiceClient, timeoutMs: number) =>
  new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(err) : resolve())));

describe('agent TLS sessions', () => {
  let s: RunningControlPlane;
  let b: { cp: ControlPlaneProcess };
  let caPem: string;
  let agent: TestAgent;

  beforeAll(async () => {
    s = await startControlPlane({ SIGIL_GRPC_MAX_HANDSHAKES: '2' });
    b = await s.startReplica({ SIGIL_GRPC_MAX_HANDSHAKES: '2' });
    caPem = (await s.admin.get<{ caCertificatePem: string }>('/agents/trust')).body.caCertificatePem;
    const name = uniqueName('tls');
    expect((await s.admin.post('/clusters', { name })).status).toBe(201);
    const token = (await s.admin.post<{ token: string }>(`/clusters/${name}/enrollment-tokens`)).body.token;
    agent = new TestAgent(s.cp.grpcAddress, caPem, name);
    await agent.enroll({ $case: 'bootstrapToken', value: token });
  });

  afterAll(async () => {
    agent?.close();
    await s?.stop();
  });

  it('an agent that reconnects to another replica resumes its TLS session and is still authenticated by its certificate', async () => {
    const creds = agentChannelCredentials(caPem, { keyPem: agent.tls!.keyPem, certificatePem: agent.certificatePem! });
    const onA = new AgentServiceClient(s.cp.grpcAddress, creds, AGENT_CHANNEL_OPTIONS);
    const fullBefore = await metric(s.cp, full);
    expect((await syncOnce(onA)).clusterKeyEnvelopes.length).toBeGreaterThan(0);
    onA.close();
    expect(await metric(s.cp, full)).toBe(fullBefore + 1);

    // Replica B never saw this agent: only the ticket, sealed under keys both derive from the HSM, lets it resume.
    const onB = new AgentServiceClient(b.cp.grpcAddress, creds, AGENT_CHANNEL_OPTIONS);
    const resumedBefore = await metric(b.cp, resumed);
    const state = await syncOnce(onB);
    onB.close();
    expect(state.clusterKeyEnvelopes.length).toBeGreaterThan(0);
    expect(await metric(b.cp, resumed)).toBe(resumedBefore + 1);
  });

  it('a client without the agent key cannot use a session it did not make (a fresh client does a full handshake and is refused)', async () => {
    const stranger = new TestAgent(b.cp.grpcAddress, caPem, uniqueName('stranger'));
    const anonymous = stranger.anonymous();
    const fullBefore = await metric(b.cp, full);
    await expect(syncOnce(anonymous, 5_000)).rejects.toMatchObject({ code: 16 }); // UNAUTHENTICATED: no certificate
    anonymous.close();
    expect(await metric(b.cp, full)).toBe(fullBefore + 1);
  });

  it('connections beyond the handshake bound are reset at once, and idle ones holding every slot give way after 3 s', async () => {
    const address = hostPort(b.cp.grpcAddress);
    // Two connections that never start their handshake hold both slots.
    const idle: Socket[] = await Promise.all(
      [0, 1].map(
        () =>
          new Promise<Socket>((resolve, reject) => {
            const sock = tcpConnect(address, () => resolve(sock));
            sock.on('error', () => undefined);
            sock.once('error', reject);
          }),
      ),
    );
    const closed = idle.map((sock) => new Promise<void>((resolve) => sock.once('close', () => resolve())));
    try {
      expect(await metric(b.cp, refusedFull)).toBe(0);
      const creds = agentChannelCredentials(caPem, { keyPem: agent.tls!.keyPem, certificatePem: agent.certificatePem! });
      const client = new AgentServiceClient(b.cp.grpcAddress, creds, AGENT_CHANNEL_OPTIONS);
      const connected = ready(client, 20_000);
      await eventually('a refused connection', async () => ((await metric(b.cp, refusedFull)) > 0 ? true : undefined), 10_000);
      // The channel retries with its backoff (≤ 5 s); once the idle ones are 3 s old, they make room.
      await connected;
      expect(await metric(b.cp, refusedStalled)).toBeGreaterThan(0);
      await Promise.race([
        Promise.any(closed),
        new Promise((_, reject) => setTimeout(() => reject(new Error('no idle connection was closed')), 1_000)),
      ]);
      expect((await syncOnce(client)).clusterKeyEnvelopes.length).toBeGreaterThan(0);
      client.close();
    } finally {
      for (const sock of idle) sock.destroy();
    }
  });
});
