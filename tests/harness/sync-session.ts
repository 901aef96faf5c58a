import type { ClientDuplexStream } from '@grpc/grpc-js';
import {
  AGENT_MESSAGE_LIMITS,
  AgentServiceClient,
  agentChannelCredentials,
  createTlsKeyAndCsr,
  derToPem,
  SecretState,
  unary,
  type DesiredSecret,
  type DesiredState,
  type EnrollResponse,
  type Grant,
  type SecretStatus,
  type SyncRequest,
  type SyncResponse,
  type UnchangedSecret,
} from '@sigil/agent-protocol';
import { generateAgentKeyPair, openClusterKeyEnvelope } from '@sigil/envelope';
import { failureOf, type CallFailure } from './test-agent.js';

// The raw Sync wire as the control-plane tests drive it: no agent logic, so a test sees (and
// can send) exactly what is on the stream. The agent's own client lives in libs/agent-sync.

/** An enrolled cluster's credentials: a client presenting its certificate, and its delivery key. */
export interface EnrolledAgent {
  clusterId: string;
  client: AgentServiceClient;
  delivery: ReturnType<typeof generateAgentKeyPair>;
  /** The TLS key and certificate (PEM), for clients of other processes. */
  keyPem: string;
  certificatePem: string;
  close(): void;
}

/** The delivery keys (version → key) an enrolled agent opens from a state's key envelopes. */
export function deliveryKeys(agent: Pick<EnrolledAgent, 'delivery'>, keyEnvelopes: Buffer[]): Map<number, Buffer> {
  return new Map(
    keyEnvelopes.map((e) => {
      const k = openClusterKeyEnvelope(agent.delivery.privateKeyPem, e);
      return [k.version, k.key] as const;
    }),
  );
}

export async function enrollAgent(address: string, caPem: string, cluster: string, token: string): Promise<EnrolledAgent> {
  const tls = createTlsKeyAndCsr(cluster);
  const delivery = generateAgentKeyPair();
  const anonymous = new AgentServiceClient(address, agentChannelCredentials(caPem), AGENT_MESSAGE_LIMITS);
  let res: EnrollResponse;
  try {
    res = await unary<EnrollResponse>((cb) =>
      anonymous.enroll(
        {
          cluster,
          credential: { $case: 'bootstrapToken', value: token },
          csrDer: tls.csrDer,
          deliveryPublicKeyDer: delivery.publicKeyDer,
          agentVersion: 'sync-test/1',
        },
        cb,
      ),
    );
  } finally {
    anonymous.close();
  }
  const certificatePem = derToPem(res.certificateDer, 'CERTIFICATE');
  const client = new AgentServiceClient(
    address,
    agentChannelCredentials(caPem, { keyPem: tls.keyPem, certificatePem }),
    AGENT_MESSAGE_LIMITS,
  );
  return { clusterId: res.clusterId, client, delivery, keyPem: tls.keyPem, certificatePem, close: () => client.close() };
}

/** One generation as assembled from its parts. */
export interface AssembledState {
  generation: bigint;
  baseGeneration: bigint;
  parts: DesiredState[];
  secrets: DesiredSecret[];
  unchanged: UnchangedSecret[];
  keyEnvelopes: Buffer[];
  secretCount: number;
}

/** An open Sync stream: every message received, assembled states, and how it ended. */
export class SyncSession {
  readonly messages: DesiredState[] = [];
  readonly states: AssembledState[] = [];
  readonly ended: Promise<CallFailure | 'ok'>;
  private readonly stream: ClientDuplexStream<SyncRequest, SyncResponse>;
  private partial: DesiredState[] = [];
  private done = false;
  /** Resolves when the control plane sent the stream's headers: it authenticated and admitted it. */
  readonly accepted: Promise<void>;

  constructor(client: AgentServiceClient, hello: { appliedGeneration: bigint; agentVersion?: string } | undefined) {
    this.stream = client.sync();
    this.accepted = new Promise((resolve) => this.stream.once('metadata', () => resolve()));
    this.stream.on('data', (m: SyncResponse) => {
      if (m.message?.$case !== 'desiredState') return;
      const p = m.message.value;
      this.messages.push(p);
      if (p.part === 0) this.partial = [];
      this.partial.push(p);
      if (!p.more) {
        const parts = this.partial;
        this.partial = [];
        this.states.push({
          generation: p.generation,
          baseGeneration: p.baseGeneration,
          parts,
          secrets: parts.flatMap((x) => x.secrets),
          unchanged: parts.flatMap((x) => x.unchanged),
          keyEnvelopes: parts[0]!.clusterKeyEnvelopes,
          secretCount: p.secretCount,
        });
      }
    });
    this.ended = new Promise((resolve) => {
      this.stream.on('error', (err) => {
        this.done = true;
        resolve(failureOf(err));
      });
      this.stream.on('end', () => {
        this.done = true;
        resolve('ok');
      });
    });
    if (hello)
      this.send({
        message: {
          $case: 'hello',
          value: { appliedGeneration: hello.appliedGeneration, agentVersion: hello.agentVersion ?? 'sync-test/1' },
        },
      });
  }

  send(m: SyncRequest): void {
    if (!this.done) this.stream.write(m);
  }

  ack(generation: bigint, secrets: SecretStatus[] = []): void {
    this.send({ message: { $case: 'applied', value: { generation, secrets } } });
  }

  /** Acknowledges a state with an APPLIED status for every secret it carried in full. */
  ackState(s: AssembledState): void {
    this.ack(
      s.generation,
      s.secrets.map((x) => ({
        target: x.target,
        secretId: x.secretId,
        version: x.version,
        generation: x.generation,
        state: SecretState.SECRET_STATE_APPLIED,
        reason: '',
        message: '',
      })),
    );
  }

  /** Reports what the agent handed to pods (delivery mode inject), as an agent's injector does. */
  grants(grants: Grant[]): void {
    this.send({ message: { $case: 'grants', value: { grants } } });
  }

  resync(): void {
    this.send({ message: { $case: 'resync', value: {} } });
  }

  /** Waits for the n-th assembled state (1-based), or throws after `timeoutMs`. */
  async state(n: number, timeoutMs = 10_000): Promise<AssembledState> {
    const until = Date.now() + timeoutMs;
    while (this.states.length < n) {
      if (this.done) throw new Error(`the stream ended after ${this.states.length} states (wanted ${n})`);
      if (Date.now() > until) throw new Error(`only ${this.states.length} states after ${timeoutMs} ms (wanted ${n})`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return this.states[n - 1]!;
  }

  /** Waits for a state that satisfies `predicate`. */
  async until(predicate: (s: AssembledState) => boolean, timeoutMs = 10_000): Promise<AssembledState> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const s = this.states.find(predicate);
      if (s) return s;
      if (this.done) throw new Error('the stream ended');
      if (Date.now() > until)
        throw new Error(`no matching state after ${timeoutMs} ms (got ${this.states.map((x) => x.generation).join(',')})`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Stops reading (the server's writes then wait on HTTP/2 flow control), and starts again. */
  pause(): void {
    this.stream.pause();
  }

  resume(): void {
    this.stream.resume();
  }

  cancel(): void {
    this.done = true;
    this.stream.cancel();
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** How the control plane ends a Sync stream that sends a Hello (for calls that must be refused). */
export async function syncRefusal(client: AgentServiceClient): Promise<CallFailure> {
  const s = new SyncSession(client, { appliedGeneration: 0n });
  const end = await s.ended;
  if (end === 'ok') throw new Error('expected the stream to be refused');
  return end;
}
