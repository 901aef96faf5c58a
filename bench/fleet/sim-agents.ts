import { createPrivateKey, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { credentials, Metadata, status, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import {
  AgentApiErrorCode,
  AGENT_CHANNEL_OPTIONS,
  AgentServiceClient,
  agentChannelCredentials,
  createTlsKeyAndCsr,
  derToPem,
  errorCodeOf,
  type EnrollResponse,
  ReconnectBackoff,
  retryAfterMs,
  unary,
} from '@sigil/agent-protocol';
import { MemorySink, SecretSync, SyncSession } from '@sigil/agent-sync';
import pg from 'pg';
import {
  now,
  type DeliveryKey,
  type Expectation,
  type FromSim,
  type LoginCheck,
  type LoginReport,
  type SimAgentContract,
  type SimAgentSpec,
  type ToSim,
} from './sim-protocol.js';

/**
 * A process hosting many simulated agents. Each speaks the real protocol on its own mTLS
 * connection (its own key and certificate, so its own HTTP/2 session): Enroll, then the Sync
 * stream with the agent's own client (@sigil/agent-sync SyncSession: hello, assembly, deltas,
 * acknowledgements, jittered reconnect) and sync logic (SecretSync: every changed envelope
 * opened with its cluster key) into an in-memory stand-in for Kubernetes. What the real agent
 * does with Kubernetes is the only part left out (bench/latency measures that one).
 */

const send = (m: FromSim) => process.send!(m);
// Only a channel of its own gives each agent its own TCP/TLS connection, as in real life.
const OWN_CONNECTION = { 'grpc.use_local_subchannel_pool': 1, ...AGENT_CHANNEL_OPTIONS };
const RETRYABLE = new Set<number>([status.UNAVAILABLE, status.RESOURCE_EXHAUSTED, status.DEADLINE_EXCEEDED]);

interface Identity {
  cluster: string;
  keyPem: string;
  certificatePem: string;
  deliveryKey: number;
}

let address = '';
let caPem = '';
let anonymous: ChannelCredentials;
let deliveryKeys: Array<{ privateKey: KeyObject; publicKeyDer: Buffer }> = [];
let keepValues = false;
let expectation: Expectation | undefined;
const met = new Map<string, { agents: number[]; lastAt: number }>();
let syncs = 0;
let syncErrors = 0;
let lastError: string | undefined;

class SimAgent implements SimAgentContract {
  identity: Identity | undefined;
  statesReceived = 0;
  completeStatesReceived = 0;
  private client: AgentServiceClient | undefined;
  private session: SyncSession | undefined;
  connected = false;
  rejected = 0;
  /** The in-memory Kubernetes. */
  private readonly sink = new MemorySink({ keepValues });
  private readonly phasesMet = new Set<string>();

  constructor(
    readonly index: number,
    readonly spec: SimAgentSpec,
  ) {}

  async enroll(index: number): Promise<{ retries: number }> {
    const tls = createTlsKeyAndCsr(this.spec.cluster);
    const deliveryKey = index % deliveryKeys.length;
    const backoff = new ReconnectBackoff({ baseMs: 250, capMs: 5_000 });
    for (let retries = 0; ; retries++) {
      const client = new AgentServiceClient(address, anonymous, OWN_CONNECTION);
      try {
        const res = await unary<EnrollResponse>((cb) =>
          client.enroll(
            {
              cluster: this.spec.cluster,
              credential: { $case: 'bootstrapToken', value: this.spec.token },
              csrDer: tls.csrDer,
              deliveryPublicKeyDer: deliveryKeys[deliveryKey]!.publicKeyDer,
              agentVersion: 'sim-agent/1',
            },
            new Metadata(),
            { deadline: Date.now() + 120_000 },
            cb,
          ),
        );
        this.identity = {
          cluster: this.spec.cluster,
          keyPem: tls.keyPem,
          certificatePem: derToPem(res.certificateDer, 'CERTIFICATE'),
          deliveryKey,
        };
        return { retries };
      } catch (err) {
        const e = err as ServiceError;
        if (!RETRYABLE.has(e.code) || retries >= 50) throw err;
        await sleep(backoff.next(retryAfterMs(e.metadata)));
      } finally {
        client.close();
      }
    }
  }

  /** Opens the Sync stream (once; it reconnects by itself). */
  watch(): void {
    if (this.session || !this.identity) return;
    const identity = this.identity;
    this.client = new AgentServiceClient(
      address,
      agentChannelCredentials(caPem, { keyPem: identity.keyPem, certificatePem: identity.certificatePem }),
      OWN_CONNECTION,
    );
    const secretSync = new SecretSync({ sink: this.sink, deliveryKey: deliveryKeys[identity.deliveryKey]!.privateKey });
    this.session = new SyncSession({
      client: () => this.client!,
      agentVersion: 'sim-agent/1',
      backoff: new ReconnectBackoff({ baseMs: 500, capMs: 10_000 }),
      reconcile: async (state) => {
        this.statesReceived++;
        if (state.baseGeneration === 0n) this.completeStatesReceived++;
        try {
          const { statuses } = await secretSync.apply(state);
          syncs++;
          this.check();
          return statuses;
        } catch (err) {
          syncErrors++;
          lastError = (err as Error).message;
          throw err;
        }
      },
      onConnected: (connected) => (this.connected = connected),
      onEnd: (err) => {
        // Only the admission ramp's refusals: a shutdown's "reconnect within 5 s" is not one.
        if (err?.code === status.UNAVAILABLE && errorCodeOf(err) === AgentApiErrorCode.AdmissionRamp) this.rejected++;
        else if (err && err.code !== status.UNAVAILABLE && err.code !== status.CANCELLED) lastError = `${err.code} ${err.details}`;
      },
    });
    this.session.start();
  }

  get appliedGeneration(): bigint {
    return this.session?.appliedGeneration ?? 0n;
  }

  /** Counts this agent for the current phase once its acked state satisfies it. */
  check(): void {
    const e = expectation;
    if (!e || this.phasesMet.has(e.phase)) return;
    let count = 0;
    let versionOk = e.version === undefined;
    for (const s of this.sink.secrets.values()) {
      if (s.namespace !== e.namespace) continue;
      count++;
      if (e.version && s.name === e.version.name && s.version >= e.version.atLeast) versionOk = true;
    }
    if (count !== e.secrets || !versionOk) return;
    this.phasesMet.add(e.phase);
    const m = met.get(e.phase) ?? { agents: [], lastAt: 0 };
    m.agents.push(this.index);
    m.lastAt = Math.max(m.lastAt, now());
    met.set(e.phase, m);
  }

  value(namespace: string, name: string, key: string): string | undefined {
    for (const s of this.sink.secrets.values()) if (s.namespace === namespace && s.name === name) return s.values?.[key];
    return undefined;
  }

  stop(): void {
    this.session?.stop();
    this.client?.close();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- The process: IPC with the bench (bench/fleet/fleet.ts), over the SimAgentContract only. ----

let agents: SimAgentContract[] = [];
let stateFile = '';

/** A failure's kind for the report: status and message, with this agent's cluster name taken out. */
function errorKind(err: unknown, cluster: string): string {
  const e = err as Partial<ServiceError>;
  const code = typeof e.code === 'number' ? `${status[e.code] ?? e.code}: ` : '';
  return `${code}${String(e.details ?? e.message ?? err)}`.split(cluster).join('<cluster>').slice(0, 200);
}

async function enrollAll(concurrency: number): Promise<void> {
  let ok = 0;
  let failed = 0;
  let retries = 0;
  const errors: string[] = [];
  const errorKinds: Record<string, number> = {};
  const latenciesMs: number[] = [];
  const progress = setInterval(() => send({ type: 'enroll-progress', ok, failed, retries }), 250);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, agents.length) }, async () => {
      while (next < agents.length) {
        const i = next++;
        const agent = agents[i]!;
        const started = now();
        try {
          retries += (await agent.enroll(i)).retries;
          ok++;
          latenciesMs.push(now() - started);
        } catch (err) {
          failed++;
          const kind = errorKind(err, agent.spec.cluster);
          errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
          if (errors.length < 5) errors.push(`${agent.spec.cluster}: ${(err as Error).message}`);
        }
      }
    }),
  );
  clearInterval(progress);
  // The agent's persisted identity (a Secret in real life): restarted processes reuse it.
  writeFileSync(stateFile, JSON.stringify(agents.map((a) => a.identity ?? null)), { mode: 0o600 });
  send({ type: 'enroll-done', ok, failed, retries, errors, errorKinds, latenciesMs });
}

/**
 * Each agent logs in with the database URL its Secret holds and runs the check's statement: the
 * credential works for that cluster. The URL stays in this process; what is reported is the role
 * name and, for a failure, its kind with the role and cluster names taken out.
 */
async function loginAll(check: LoginCheck): Promise<LoginReport> {
  const report: LoginReport = { ok: 0, failed: 0, missing: 0, clusters: [], usernames: [], errorKinds: {} };
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(check.concurrency, agents.length) }, async () => {
      while (next < agents.length) {
        const i = next++;
        const agent = agents[i]!;
        report.clusters[i] = agent.spec.cluster;
        report.usernames[i] = '';
        const url = agent.value(check.namespace, check.name, check.key);
        if (url === undefined) {
          report.missing++;
          continue;
        }
        const user = decodeURIComponent(new URL(url).username);
        const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
        c.on('error', () => undefined);
        try {
          await c.connect();
          await c.query(check.sql);
          report.ok++;
          report.usernames[i] = user;
        } catch (err) {
          report.failed++;
          const e = err as Error & { code?: string };
          const kind = `${e.code ?? e.name}: ${e.message}`
            .split(user)
            .join('<role>')
            .split(agent.spec.cluster)
            .join('<cluster>')
            .slice(0, 200);
          report.errorKinds[kind] = (report.errorKinds[kind] ?? 0) + 1;
        } finally {
          await c.end().catch(() => undefined);
        }
      }
    }),
  );
  return report;
}

process.on('message', (raw) => {
  const m = raw as ToSim;
  switch (m.type) {
    case 'init': {
      ({ address, caPem, stateFile } = m);
      keepValues = m.keepValues ?? false;
      anonymous = credentials.createSsl(Buffer.from(caPem));
      deliveryKeys = m.deliveryKeys.map((k: DeliveryKey) => ({
        privateKey: createPrivateKey(k.privateKeyPem),
        publicKeyDer: Buffer.from(k.publicKeyDerB64, 'base64'),
      }));
      agents = m.agents.map((s, i) => new SimAgent(i, s));
      let restored = 0;
      if (existsSync(stateFile)) {
        const saved = JSON.parse(readFileSync(stateFile, 'utf8')) as Array<Identity | null>;
        saved.forEach((id, i) => {
          if (id && agents[i]) {
            agents[i].identity = id;
            restored++;
          }
        });
      }
      send({ type: 'ready', restored });
      break;
    }
    case 'enroll':
      void enrollAll(m.concurrency);
      break;
    case 'watch':
      // Spread the initial connects over a second, like pods starting.
      agents.forEach((a) => setTimeout(() => a.watch(), Math.random() * 1000));
      break;
    case 'expect':
      expectation = m.expectation;
      for (const a of agents) a.check();
      break;
    case 'report':
      send({
        type: 'generations',
        clusters: agents.map((a) => a.spec.cluster),
        applied: agents.map((a) => a.appliedGeneration.toString()),
      });
      break;
    case 'login':
      void loginAll(m.check).then((r) => send({ type: 'login-done', ...r }));
      break;
    case 'stop':
      for (const a of agents) a.stop();
      setTimeout(() => process.exit(0), 200);
      break;
  }
});

setInterval(() => {
  for (const [phase, m] of met) {
    if (m.agents.length > 0) send({ type: 'met', phase, agents: m.agents, lastAt: m.lastAt });
    m.agents = [];
  }
}, 25).unref();

setInterval(() => {
  let connected = 0;
  let rejected = 0;
  let states = 0;
  let completeStates = 0;
  for (const a of agents) {
    if (a.connected) connected++;
    rejected += a.rejected;
    states += a.statesReceived;
    completeStates += a.completeStatesReceived;
  }
  send({ type: 'watching', connected, rejected });
  send({ type: 'stats', syncs, syncErrors, rssMiB: process.memoryUsage.rss() / 2 ** 20, lastError, states, completeStates });
}, 500).unref();

process.on('disconnect', () => process.exit(0));
