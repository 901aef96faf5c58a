import { X509Certificate } from 'node:crypto';
import { status, type ServiceError } from '@grpc/grpc-js';
import {
  AGENT_CHANNEL_OPTIONS,
  AGENT_MESSAGE_LIMITS,
  AgentServiceClient,
  agentChannelCredentials,
  createCsrForKey,
  createTlsKeyAndCsr,
  derToPem,
  errorCodeOf,
  type SecretFailureReason,
  type DesiredSecret,
  type EnrollResponse,
  type RenewCertificateResponse,
  type SecretStatus,
  unary,
} from '@sigil/agent-protocol';
import { MemorySink, SecretSync, SyncSession, type AssembledState, type HeldState } from '@sigil/agent-sync';
import { generateAgentKeyPair } from '@sigil/envelope';
import { eventually } from './eventually.js';
import type { ApiClient } from './api-client.js';

export type Credential = { $case: 'bootstrapToken'; value: string } | { $case: 'serviceAccountToken'; value: string };

/** A call's failure as the tests look at it: gRPC status and Sigil's error code. */
export interface CallFailure {
  code: status;
  errorCode: string | undefined;
  details: string;
}

export function failureOf(err: unknown): CallFailure {
  const e = err as ServiceError;
  return { code: e.code, errorCode: errorCodeOf(e), details: e.details };
}

/** The failure of a call that must fail; throws if it succeeded. */
export async function refused(p: Promise<unknown>): Promise<CallFailure> {
  try {
    await p;
  } catch (err) {
    return failureOf(err);
  }
  throw new Error('expected the call to fail');
}

/** The agent's Sync stream as a test watches it: the generations it was sent, and how it ended. */
export class TestSyncStream {
  /** The generation of every assembled state received, in order. */
  readonly generations: bigint[] = [];
  readonly ended: Promise<CallFailure | 'ok'>;
  private settle!: (end: CallFailure | 'ok') => void;

  constructor(private readonly session: SyncSession) {
    this.ended = new Promise((resolve) => (this.settle = resolve));
  }

  /** @internal */
  end(end: CallFailure | 'ok'): void {
    this.settle(end);
  }

  async waitFor(predicate: (gens: bigint[]) => boolean, timeoutMs = 5_000): Promise<void> {
    await eventually(
      'the expected generations on the sync stream',
      () => {
        if (predicate(this.generations)) return true;
        throw new Error(`saw ${this.generations.join(',')}`);
      },
      timeoutMs,
      10,
    );
  }

  cancel(): void {
    this.session.stop();
    this.settle({ code: status.CANCELLED, errorCode: undefined, details: 'cancelled by the test' });
  }
}

/** A state received and not yet applied: the session waits for its acknowledgement. */
interface Pending {
  state: AssembledState;
  ack: (statuses: SecretStatus[]) => void;
}

/**
 * Opens Sync on `client` with Hello(0) and returns the first complete state, unacknowledged;
 * rejects with the stream's error (a refused certificate, a disabled cluster).
 */
export function syncOnce(
  client: AgentServiceClient,
  timeoutMs = 10_000,
): Promise<{ generation: bigint; secrets: DesiredSecret[]; clusterKeyEnvelopes: Buffer[] }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      session.stop();
      reject(new Error(`no desired state within ${timeoutMs} ms`));
    }, timeoutMs);
    const session = new SyncSession({
      client: () => client,
      agentVersion: 'test-agent/1',
      reconcile: (state) => {
        clearTimeout(timer);
        session.stop();
        resolve({
          generation: state.generation,
          secrets: [...state.secrets.values()],
          clusterKeyEnvelopes: [...state.clusterKeyEnvelopes],
        });
        return Promise.resolve([]);
      },
      onEnd: (err) => {
        clearTimeout(timer);
        reject(err ?? new Error('the sync stream ended without a state'));
        return 'stop';
      },
    });
    session.start();
  });
}
/**
 * A cluster registered through `admin` (with `labels`) whose TestAgent enrolled at `grpcAddress`
 * with a bootstrap token, and whose stream is open and synced to its first generation.
 */
export async function syncedTestAgent(
  admin: ApiClient,
  grpcAddress: string,
  cluster: string,
  labels: Record<string, string> = {},
): Promise<{ agent: TestAgent; watch: TestSyncStream }> {
  const registered = await admin.post('/clusters', { name: cluster, labels });
  if (registered.status !== 201) throw new Error(`registering ${cluster}: HTTP ${registered.status} ${registered.text.slice(0, 300)}`);
  const token = (await admin.post<{ token: string }>(`/clusters/${cluster}/enrollment-tokens`)).body.token;
  const caPem = (await admin.get<{ caCertificatePem: string }>('/agents/trust')).body.caCertificatePem;
  const agent = new TestAgent(grpcAddress, caPem, cluster);
  await agent.enroll({ $case: 'bootstrapToken', value: token });
  const watch = agent.open();
  try {
    await watch.waitFor((g) => g.length > 0);
    await agent.sync();
  } catch (err) {
    watch.cancel();
    agent.close();
    throw err;
  }
  return { agent, watch };
}

/**
 * An agent as the protocol sees it, over real TLS: its own keys (made here, never sent), Enroll
 * with a credential, then mTLS calls with the certificate it got.
 */
export class TestAgent {
  readonly delivery = generateAgentKeyPair();
  tls: { keyPem: string; csrDer: Buffer } | undefined;
  certificatePem: string | undefined;
  enrollment: EnrollResponse | undefined;
  private authed: AgentServiceClient | undefined;
  private session: SyncSession | undefined;
  private stream: TestSyncStream | undefined;
  private held: HeldState | undefined;
  private pending: Pending | undefined;
  private readonly waiters: Array<() => void> = [];
  private autoApply: { fail?: (target: string) => SecretFailureReason | undefined } | undefined;
  private failing: ((target: string) => SecretFailureReason | undefined) | undefined;
  /** The test agent's Kubernetes: Secrets in memory, values kept for the tests to look at. */
  readonly sink = new MemorySink({ keepValues: true, fail: (target) => this.failing?.(target) });
  private readonly secretSync = new SecretSync({ sink: this.sink, deliveryKey: this.delivery.privateKeyPem });

  constructor(
    readonly address: string,
    readonly caPem: string,
    readonly cluster: string,
  ) {}

  /** A client with no certificate (all an agent has before enrolling). */
  anonymous(): AgentServiceClient {
    return new AgentServiceClient(this.address, agentChannelCredentials(this.caPem), AGENT_MESSAGE_LIMITS);
  }

  async enroll(credential: Credential, overrides: { csrDer?: Buffer; deliveryPublicKeyDer?: Buffer } = {}): Promise<EnrollResponse> {
    this.tls ??= createTlsKeyAndCsr(this.cluster);
    const client = this.anonymous();
    try {
      const tls = this.tls;
      const res = await unary<EnrollResponse>((cb) =>
        client.enroll(
          {
            cluster: this.cluster,
            credential,
            csrDer: overrides.csrDer ?? tls.csrDer,
            deliveryPublicKeyDer: overrides.deliveryPublicKeyDer ?? this.delivery.publicKeyDer,
            agentVersion: 'test-agent/1',
          },
          cb,
        ),
      );
      this.enrollment = res;
      this.useCertificate(res.certificateDer);
      return res;
    } finally {
      client.close();
    }
  }

  useCertificate(der: Buffer): void {
    this.certificatePem = derToPem(der, 'CERTIFICATE');
    this.authed?.close();
    this.authed = undefined;
  }

  /** A client presenting this agent's certificate. */
  client(): AgentServiceClient {
    if (!this.tls || !this.certificatePem) throw new Error('enroll first');
    this.authed ??= new AgentServiceClient(
      this.address,
      agentChannelCredentials(this.caPem, { keyPem: this.tls.keyPem, certificatePem: this.certificatePem }),
      AGENT_CHANNEL_OPTIONS,
    );
    return this.authed;
  }

  /**
   * The agent's Sync stream (one per agent, opened on first use; a new one after it ended,
   * from the state held). Without `autoApply`, each state waits for sync() to apply and
   * acknowledge it, so a test decides when the control plane hears back.
   */
  open(opts: { autoApply?: { fail?: (target: string) => SecretFailureReason | undefined } } = {}): TestSyncStream {
    if (this.session?.running && this.stream) return this.stream;
    if (opts.autoApply) this.autoApply = opts.autoApply;
    const session = new SyncSession({
      client: () => this.client(),
      agentVersion: 'test-agent/1',
      held: this.held,
      reconcile: (state) => {
        stream.generations.push(state.generation);
        return new Promise<SecretStatus[]>((ack) => {
          const p = { state, ack };
          if (this.autoApply) void this.apply(p, this.autoApply.fail);
          else {
            this.pending = p;
            for (const w of this.waiters.splice(0)) w();
          }
        });
      },
      onEnd: (err) => {
        this.held = session.heldState;
        this.pending = undefined; // it can no longer be acknowledged
        stream.end(err ? failureOf(err) : 'ok');
        return 'stop';
      },
    });
    const stream = new TestSyncStream(session);
    this.session = session;
    this.stream = stream;
    session.start();
    return stream;
  }

  /** The complete desired state, on a Sync stream of its own that acknowledges nothing. */
  desiredState(): Promise<{ generation: bigint; secrets: DesiredSecret[]; clusterKeyEnvelopes: Buffer[] }> {
    return syncOnce(this.client());
  }

  /** The last state this agent applied (its cluster key envelopes, its secrets). */
  get lastState(): HeldState | undefined {
    return this.session?.heldState ?? this.held;
  }

  async renew(): Promise<X509Certificate> {
    const csrDer = createCsrForKey(this.cluster, this.tls!.keyPem);
    const res = await unary<RenewCertificateResponse>((cb) => this.client().renewCertificate({ csrDer }, cb));
    this.useCertificate(res.certificateDer);
    return new X509Certificate(res.certificateDer);
  }

  /**
   * What a real agent does with a state: the next one the Sync stream assembles (the one
   * waiting, or, if none comes within `waitMs`, the complete state a Resync asks for) is applied
   * with the shared sync logic into memory, its envelopes opened with the cluster keys only this
   * agent can unwrap, and acknowledged with its statuses (`fail`: a target reported failed).
   * Returns every applied Secret's values by `namespace/name`, and the generation.
   */
  async sync(
    opts: { fail?: (target: string) => SecretFailureReason | undefined; waitMs?: number } = {},
  ): Promise<{ generation: bigint; secrets: Map<string, Record<string, string>> }> {
    const stream = this.open();
    let p = this.pending ?? (await this.nextPending(opts.waitMs ?? 1_000, stream));
    if (!p) {
      this.session!.resync();
      p = await this.nextPending(15_000, stream);
    }
    if (!p) throw new Error('no desired state arrived on the sync stream');
    this.pending = undefined;
    return this.apply(p, opts.fail);
  }

  private async nextPending(timeoutMs: number, stream: TestSyncStream): Promise<Pending | undefined> {
    if (this.pending) return this.pending;
    let timer: NodeJS.Timeout | undefined;
    const ended = stream.ended.then((e) => {
      throw Object.assign(new Error(`the sync stream ended: ${e === 'ok' ? 'ok' : `${e.code} ${e.errorCode ?? ''}`}`), e === 'ok' ? {} : e);
    });
    await Promise.race([
      new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        timer = setTimeout(resolve, timeoutMs);
      }),
      ended,
    ]).finally(() => clearTimeout(timer));
    return this.pending;
  }

  private async apply(
    p: Pending,
    fail: ((target: string) => SecretFailureReason | undefined) | undefined,
  ): Promise<{ generation: bigint; secrets: Map<string, Record<string, string>> }> {
    this.failing = fail;
    let statuses: SecretStatus[];
    try {
      statuses = (await this.secretSync.apply(p.state)).statuses;
    } finally {
      this.failing = undefined;
    }
    p.ack(statuses);
    const secrets = new Map<string, Record<string, string>>();
    for (const k of this.secretSync.desired.keys()) {
      const held = this.sink.secrets.get(k);
      if (held?.values && this.secretSync.applied(k)) secrets.set(k, held.values);
    }
    return { generation: p.state.generation, secrets };
  }
  close(): void {
    this.session?.stop();
    this.authed?.close();
  }
}

export { unary };
