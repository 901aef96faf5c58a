import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { generateAgentKeyPair } from '@sigil/envelope';
import { hashToken } from '../../apps/control-plane/src/auth/bootstrap-admin-token.js';
import type { BenchStack } from '../lib/stack.js';
import { now, type DeliveryKey, type Expectation, type FromSim, type SimAgentSpec, type ToSim } from './sim-protocol.js';

const SIM = fileURLToPath(new URL('./sim-agents.js', import.meta.url));

/** One simulated-agent process and what it last told us. */
class SimProcess {
  child!: ChildProcess;
  enrollProgress = { ok: 0, failed: 0, retries: 0 };
  enrollDone: Extract<FromSim, { type: 'enroll-done' }> | undefined;
  connected = 0;
  rejected = 0;
  stats: Extract<FromSim, { type: 'stats' }> | undefined;
  private ready: Promise<number> = Promise.resolve(0);

  constructor(
    readonly index: number,
    readonly agents: SimAgentSpec[],
    private readonly onMet: (phase: string, agents: number[], lastAt: number) => void,
  ) {}

  spawn(init: Omit<Extract<ToSim, { type: 'init' }>, 'type' | 'agents' | 'stateFile'>, stateDir: string): Promise<number> {
    this.child = fork(SIM, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
    this.connected = 0;
    this.ready = new Promise((resolve, reject) => {
      this.child.once('exit', (code, signal) => reject(new Error(`sim process ${this.index} exited (${code ?? signal})`)));
      this.child.on('message', (raw) => {
        const m = raw as FromSim;
        switch (m.type) {
          case 'ready':
            resolve(m.restored);
            break;
          case 'enroll-progress':
            this.enrollProgress = m;
            break;
          case 'enroll-done':
            this.enrollDone = m;
            break;
          case 'watching':
            this.connected = m.connected;
            this.rejected = m.rejected;
            break;
          case 'met':
            this.onMet(m.phase, m.agents, m.lastAt);
            break;
          case 'stats':
            this.stats = m;
            break;
        }
      });
    });
    this.send({ type: 'init', ...init, agents: this.agents, stateFile: path.join(stateDir, `sim-${this.index}.json`) });
    return this.ready;
  }

  send(m: ToSim): void {
    this.child.send(m);
  }

  kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve();
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.kill('SIGKILL');
    return exited;
  }
}

export interface EnrollResult {
  agents: number;
  ok: number;
  failed: number;
  retries: number;
  durationMs: number;
  perSecond: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  errors: string[];
}

export const percentile = (sorted: number[], p: number): number =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;

/**
 * N simulated agents spread over P processes. Clusters and their one-time enrollment tokens
 * are inserted with SQL exactly as `POST /clusters` and `POST /clusters/{c}/enrollment-tokens`
 * store them (the REST rate limit of 50 requests/s per token would make registering 10,000
 * clusters take minutes, and registration is not what is measured).
 */
export class Fleet {
  private readonly sims: SimProcess[];
  /** Per phase: which agents (by global index) acked it, and when the last one did. */
  private readonly met = new Map<string, { agents: Set<number>; lastAt: number }>();
  private expectation: Expectation | undefined;
  private readonly deliveryKeys: DeliveryKey[];

  private constructor(
    private readonly stack: BenchStack,
    readonly size: number,
    agents: SimAgentSpec[],
    processes: number,
    private readonly caPem: string,
  ) {
    // RSA-3072 key generation takes ~100 ms; agents share a few delivery keys (the control plane
    // cannot tell, and wraps per cluster all the same). Every agent has its own TLS key.
    this.deliveryKeys = Array.from({ length: 8 }, () => {
      const k = generateAgentKeyPair();
      return { privateKeyPem: k.privateKeyPem, publicKeyDerB64: k.publicKeyDer.toString('base64') };
    });
    const per = Math.ceil(agents.length / processes);
    this.sims = Array.from(
      { length: processes },
      (_, i) =>
        new SimProcess(i, agents.slice(i * per, (i + 1) * per), (phase, acked, lastAt) => {
          const m = this.met.get(phase) ?? { agents: new Set<number>(), lastAt: 0 };
          for (const a of acked) m.agents.add(i * per + a);
          m.lastAt = Math.max(m.lastAt, lastAt);
          this.met.set(phase, m);
        }),
    );
  }

  static async create(stack: BenchStack, opts: { size: number; processes: number; prefix: string; labels: Record<string, string> }) {
    const agents: SimAgentSpec[] = Array.from({ length: opts.size }, (_, i) => ({
      cluster: `${opts.prefix}-${String(i).padStart(5, '0')}`,
      token: `sge_${randomBytes(32).toString('base64url')}`,
    }));
    const db = new pg.Client({ connectionString: stack.databaseUrl });
    await db.connect();
    try {
      await db.query('BEGIN');
      const ids = await db.query<{ id: string }>(
        `INSERT INTO clusters (name, labels, state, version)
         SELECT name, $2::jsonb, 'registered', 1 FROM unnest($1::text[]) AS name RETURNING id`,
        [agents.map((a) => a.cluster), JSON.stringify(opts.labels)],
      );
      await db.query(
        `INSERT INTO enrollment_tokens (cluster_id, token_hash, expires_at, created_by)
         SELECT id, hash, now() + interval '1 day', 'bench' FROM unnest($1::uuid[], $2::bytea[]) AS t(id, hash)`,
        [ids.rows.map((r) => r.id), agents.map((a) => hashToken(a.token))],
      );
      await db.query('COMMIT');
    } finally {
      await db.end();
    }
    const fleet = new Fleet(stack, opts.size, agents, Math.min(opts.processes, opts.size), await stack.caPem());
    await fleet.spawnAll();
    return fleet;
  }

  private spawnAll(): Promise<number[]> {
    return Promise.all(
      this.sims.map((s) =>
        s.spawn({ address: this.stack.grpcAddress, caPem: this.caPem, deliveryKeys: this.deliveryKeys }, this.stack.dir),
      ),
    );
  }

  /** Every agent enrolls at once (each process keeps `concurrency` Enroll calls in flight). */
  async enroll(concurrency: number, onProgress?: (ok: number) => void): Promise<EnrollResult> {
    const started = now();
    for (const s of this.sims) s.send({ type: 'enroll', concurrency });
    while (this.sims.some((s) => !s.enrollDone)) {
      await sleep(100);
      onProgress?.(this.sims.reduce((n, s) => n + s.enrollProgress.ok, 0));
    }
    const durationMs = now() - started;
    const done = this.sims.map((s) => s.enrollDone!);
    const latencies = done.flatMap((d) => d.latenciesMs).sort((a, b) => a - b);
    const ok = done.reduce((n, d) => n + d.ok, 0);
    return {
      agents: this.size,
      ok,
      failed: done.reduce((n, d) => n + d.failed, 0),
      retries: done.reduce((n, d) => n + d.retries, 0),
      durationMs,
      perSecond: ok / (durationMs / 1000),
      latencyP50Ms: percentile(latencies, 50),
      latencyP99Ms: percentile(latencies, 99),
      errors: done.flatMap((d) => d.errors).slice(0, 5),
    };
  }

  get connected(): number {
    return this.sims.reduce((n, s) => n + s.connected, 0);
  }

  get admissionRejections(): number {
    return this.sims.reduce((n, s) => n + s.rejected, 0);
  }

  /** Opens every agent's Watch; resolves when all streams are up (or throws after `timeoutMs`). */
  async watch(timeoutMs: number, onProgress?: (connected: number) => void): Promise<number> {
    const started = now();
    for (const s of this.sims) s.send({ type: 'watch' });
    await this.until(
      () => this.connected >= this.size,
      timeoutMs,
      'all streams connected',
      () => {
        onProgress?.(this.connected);
        return `${this.connected}/${this.size} connected`;
      },
    );
    return now() - started;
  }

  /**
   * Announces what every agent must hold, then waits until each one has it applied and acked
   * (ReportStatus answered). Returns the moment the last agent acked.
   */
  async expect(expectation: Expectation, timeoutMs: number, onProgress?: (met: number) => void): Promise<number> {
    this.announce(expectation);
    return this.acked(expectation.phase, timeoutMs, onProgress);
  }

  /** Tells every agent what the phase expects (again, after a restart). */
  announce(expectation: Expectation): void {
    this.expectation = expectation;
    for (const s of this.sims) s.send({ type: 'expect', expectation });
  }

  /** Waits until every agent acked `phase`; returns when the last one did. */
  async acked(phase: string, timeoutMs: number, onProgress?: (met: number) => void): Promise<number> {
    const m = () => this.met.get(phase) ?? { agents: new Set<number>(), lastAt: 0 };
    await this.until(
      () => m().agents.size >= this.size,
      timeoutMs,
      `phase ${phase}`,
      () => {
        onProgress?.(m().agents.size);
        return `${m().agents.size}/${this.size} acked; ${this.describeSims()}`;
      },
    );
    return m().lastAt;
  }

  metCount(phase: string): number {
    return this.met.get(phase)?.agents.size ?? 0;
  }

  describeSims(): string {
    const syncs = this.sims.reduce((n, s) => n + (s.stats?.syncs ?? 0), 0);
    const errors = this.sims.reduce((n, s) => n + (s.stats?.syncErrors ?? 0), 0);
    const last = this.sims.map((s) => s.stats?.lastError).find(Boolean);
    return `${syncs} syncs, ${errors} sync errors${last ? ` (last: ${last})` : ''}, ${this.connected} streams`;
  }

  get pids(): number[] {
    return this.sims.map((s) => s.child.pid!);
  }

  /** RSS of the simulator processes together, MiB. */
  simRssMiB(): number {
    return this.sims.reduce((n, s) => n + (s.stats?.rssMiB ?? 0), 0);
  }

  /** SIGKILLs every simulator process and starts them again from their saved identities. */
  async restartAgents(): Promise<void> {
    await Promise.all(this.sims.map((s) => s.kill()));
    const restored = await this.spawnAll();
    const total = restored.reduce((a, b) => a + b, 0);
    if (total !== this.size) throw new Error(`only ${total}/${this.size} agent identities restored`);
    for (const s of this.sims) {
      s.send({ type: 'watch' });
      if (this.expectation) s.send({ type: 'expect', expectation: this.expectation });
    }
  }

  async stop(): Promise<void> {
    for (const s of this.sims) {
      try {
        s.send({ type: 'stop' });
      } catch {
        // already gone
      }
    }
    await sleep(300);
    await Promise.all(this.sims.map((s) => s.kill()));
  }

  private async until(done: () => boolean, timeoutMs: number, what: string, describe: () => string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastReport = 0;
    while (!done()) {
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${describe()}`);
      if (Date.now() - lastReport > 2000) {
        lastReport = Date.now();
        describe();
      }
      await sleep(5);
    }
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
