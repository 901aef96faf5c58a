import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { generateAgentKeyPair } from '@sigil/envelope';
import type { BenchStack } from '../lib/stack.js';
import {
  now,
  type DeliveryKey,
  type Expectation,
  type FromSim,
  type LoginCheck,
  type LoginReport,
  type SimAgentSpec,
  type ToSim,
} from './sim-protocol.js';

const SIM = fileURLToPath(new URL('./sim-agents.js', import.meta.url));

/** One simulated-agent process and what it last told us. */
class SimProcess {
  child!: ChildProcess;
  enrollProgress = { ok: 0, failed: 0, retries: 0 };
  enrollDone: Extract<FromSim, { type: 'enroll-done' }> | undefined;
  connected = 0;
  rejected = 0;
  stats: Extract<FromSim, { type: 'stats' }> | undefined;
  /** Set when the process exited without being told to (a crash fails the run at once). */
  crashed: string | undefined;
  private stopping = false;
  private generationsWaiter: ((m: Extract<FromSim, { type: 'generations' }>) => void) | undefined;
  private loginWaiter: ((m: LoginReport) => void) | undefined;
  private ready: Promise<number> = Promise.resolve(0);

  constructor(
    readonly index: number,
    readonly agents: SimAgentSpec[],
    private readonly onMet: (phase: string, agents: number[], lastAt: number) => void,
  ) {}

  spawn(init: Omit<Extract<ToSim, { type: 'init' }>, 'type' | 'agents' | 'stateFile'>, stateDir: string): Promise<number> {
    this.child = fork(SIM, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
    this.connected = 0;
    this.stopping = false;
    this.crashed = undefined;
    this.child.on('error', () => undefined); // a send racing an exit; the exit is what counts
    this.ready = new Promise((resolve, reject) => {
      this.child.once('exit', (code, signal) => {
        if (!this.stopping) this.crashed = `sim process ${this.index} exited (${code ?? signal})`;
        reject(new Error(`sim process ${this.index} exited (${code ?? signal})`));
      });
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
          case 'generations':
            this.generationsWaiter?.(m);
            this.generationsWaiter = undefined;
            break;
          case 'login-done':
            this.loginWaiter?.(m);
            this.loginWaiter = undefined;
            break;
        }
      });
    });
    this.send({ type: 'init', ...init, agents: this.agents, stateFile: path.join(stateDir, `sim-${this.index}.json`) });
    return this.ready;
  }

  send(m: ToSim): void {
    if (this.child.connected) this.child.send(m);
  }

  /** Each agent's cluster and the generation it applied and acked. */
  generations(): Promise<Extract<FromSim, { type: 'generations' }>> {
    return new Promise((resolve) => {
      this.generationsWaiter = resolve;
      this.send({ type: 'report' });
    });
  }

  /** Every agent of the process logs in with its credential (see LoginCheck). */
  login(check: LoginCheck): Promise<LoginReport> {
    return new Promise((resolve) => {
      this.loginWaiter = resolve;
      this.send({ type: 'login', check });
    });
  }

  kill(): Promise<void> {
    this.stopping = true;
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
  /** Failures by kind → how many (empty when none failed). */
  errorKinds: Record<string, number>;
}

/** Registering the fleet through the REST API: setup, not a measured phase, but timed. */
export interface Registration {
  clusters: number;
  durationMs: number;
  perSecond: number;
  concurrency: number;
}

/** Agents at the built generation, from both sides: what each agent acked, and what the control plane recorded. */
export interface SyncCheck {
  /** Agents whose acked generation equals their cluster's built_generation. */
  agentsInSync: number;
  /** Clusters whose recorded applied_generation equals built_generation. */
  recordedInSync: number;
  /** A few that are not, for the log. */
  behind: string[];
}

export const percentile = (sorted: number[], p: number): number =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;

/**
 * N simulated agents spread over P processes (each process on one replica's gRPC port, round
 * robin). Clusters are registered through the real path, the REST API: `POST /clusters` with
 * labels (which places the cluster in matching publications), then
 * `POST /clusters/{c}/enrollment-tokens`, `concurrency` requests in flight, with the stack's
 * raised rate limit. That is setup, timed but not a measured phase.
 */
export class Fleet {
  private readonly sims: SimProcess[];
  /** Per phase: which agents (by global index) acked it, and when the last one did. */
  private readonly met = new Map<string, { agents: Set<number>; lastAt: number }>();
  private expectation: Expectation | undefined;
  private readonly deliveryKeys: DeliveryKey[];
  registration: Registration | undefined;

  private constructor(
    private readonly stack: BenchStack,
    readonly size: number,
    agents: SimAgentSpec[],
    processes: number,
    private readonly caPem: string,
    private readonly keepValues: boolean,
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

  static async create(
    stack: BenchStack,
    opts: {
      size: number;
      processes: number;
      prefix: string;
      labels: Record<string, string>;
      registerConcurrency?: number;
      /** Agents keep the values they decrypt (for `login`); by default they open and drop them. */
      keepValues?: boolean;
    },
  ): Promise<Fleet> {
    const names = Array.from({ length: opts.size }, (_, i) => `${opts.prefix}-${String(i).padStart(5, '0')}`);
    const concurrency = opts.registerConcurrency ?? 16;
    const started = now();
    const tokens = await registerClusters(stack, names, opts.labels, concurrency);
    const durationMs = now() - started;
    const agents: SimAgentSpec[] = names.map((cluster, i) => ({ cluster, token: tokens[i]! }));
    const fleet = new Fleet(stack, opts.size, agents, Math.min(opts.processes, opts.size), await stack.caPem(), opts.keepValues ?? false);
    fleet.registration = { clusters: opts.size, durationMs, perSecond: opts.size / (durationMs / 1000), concurrency };
    await fleet.spawnAll();
    return fleet;
  }

  private spawnAll(): Promise<number[]> {
    return Promise.all(
      this.sims.map((s) =>
        s.spawn(
          {
            // Agents spread across the replicas' gRPC ports, a process at a time.
            address: this.stack.grpcAddresses[s.index % this.stack.grpcAddresses.length]!,
            caPem: this.caPem,
            deliveryKeys: this.deliveryKeys,
            keepValues: this.keepValues,
          },
          this.stack.dir,
        ),
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
    const errorKinds: Record<string, number> = {};
    for (const d of done) for (const [k, n] of Object.entries(d.errorKinds)) errorKinds[k] = (errorKinds[k] ?? 0) + n;
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
      errorKinds,
    };
  }

  /**
   * Every agent logs in with the credential its Secret holds (`check.concurrency` at once per
   * simulator process) and runs `check.sql`. Returns the reports merged, clusters and role names
   * in agent order.
   */
  async login(check: LoginCheck): Promise<LoginReport & { ms: number }> {
    const started = now();
    const reports = await Promise.all(this.sims.map((s) => s.login(check)));
    const merged: LoginReport = { ok: 0, failed: 0, missing: 0, clusters: [], usernames: [], errorKinds: {} };
    for (const r of reports) {
      merged.ok += r.ok;
      merged.failed += r.failed;
      merged.missing += r.missing;
      merged.clusters.push(...r.clusters);
      merged.usernames.push(...r.usernames);
      for (const [k, n] of Object.entries(r.errorKinds)) merged.errorKinds[k] = (merged.errorKinds[k] ?? 0) + n;
    }
    return { ...merged, ms: now() - started };
  }

  get connected(): number {
    return this.sims.reduce((n, s) => n + s.connected, 0);
  }

  get admissionRejections(): number {
    return this.sims.reduce((n, s) => n + s.rejected, 0);
  }

  /** Opens every agent's Sync stream; resolves when all streams are up (or throws after `timeoutMs`). */
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

  /** Desired states the agents received (assembled), in all and complete ones, since their processes started. */
  get statesReceived(): { states: number; complete: number } {
    return {
      states: this.sims.reduce((n, s) => n + (s.stats?.states ?? 0), 0),
      complete: this.sims.reduce((n, s) => n + (s.stats?.completeStates ?? 0), 0),
    };
  }

  /** Waits for the next stats message of every simulator process, so counters read after it are current. */
  async freshStats(): Promise<void> {
    const before = this.sims.map((s) => s.stats);
    await this.until(
      () => this.sims.every((s, i) => s.stats !== before[i]),
      5_000,
      'fresh simulator stats',
      () => '',
    );
  }

  /** Compares every agent's acked generation with its cluster's built generation in PostgreSQL. */
  async syncCheck(): Promise<SyncCheck> {
    const reports = await Promise.all(this.sims.map((s) => s.generations()));
    const db = new pg.Client({ connectionString: this.stack.databaseUrl });
    await db.connect();
    let rows: Array<{ name: string; built: string; applied: string }>;
    try {
      rows = (
        await db.query<{ name: string; built: string; applied: string }>(
          `SELECT name, built_generation::text AS built, applied_generation::text AS applied FROM clusters WHERE name = ANY($1::text[])`,
          [reports.flatMap((r) => r.clusters)],
        )
      ).rows;
    } finally {
      await db.end();
    }
    const built = new Map(rows.map((r) => [r.name, r.built]));
    let agentsInSync = 0;
    const behind: string[] = [];
    for (const r of reports)
      r.clusters.forEach((c, i) => {
        if (built.get(c) === r.applied[i]) agentsInSync++;
        else if (behind.length < 5) behind.push(`${c}: agent acked ${r.applied[i]}, built ${built.get(c) ?? '?'}`);
      });
    return { agentsInSync, recordedInSync: rows.filter((r) => r.built === r.applied).length, behind };
  }

  /**
   * Polls until every agent's stream is open and at its cluster's built generation (checked
   * from both sides, see syncCheck). Returns when that was first seen.
   */
  async inSync(timeoutMs: number, onProgress?: (n: number) => void): Promise<{ at: number; check: SyncCheck }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const crashed = this.sims.find((s) => s.crashed)?.crashed;
      if (crashed) throw new Error(`${crashed} while waiting for every agent in sync`);
      if (this.connected >= this.size) {
        const check = await this.syncCheck();
        onProgress?.(Math.min(check.agentsInSync, check.recordedInSync));
        if (check.agentsInSync >= this.size && check.recordedInSync >= this.size) return { at: now(), check };
        if (Date.now() > deadline)
          throw new Error(`timed out after ${timeoutMs} ms waiting for every agent in sync: ${JSON.stringify(check)}`);
      } else {
        onProgress?.(this.connected);
        if (Date.now() > deadline)
          throw new Error(`timed out after ${timeoutMs} ms waiting for streams: ${this.connected}/${this.size} connected`);
      }
      await sleep(100);
    }
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
    for (const s of this.sims) s.send({ type: 'stop' });
    await sleep(300);
    await Promise.all(this.sims.map((s) => s.kill()));
  }

  private async until(done: () => boolean, timeoutMs: number, what: string, describe: () => string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastReport = 0;
    while (!done()) {
      const crashed = this.sims.find((s) => s.crashed)?.crashed;
      if (crashed) throw new Error(`${crashed} while waiting for ${what}: ${describe()}`);
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

/**
 * Registers every cluster through the REST API of replica 0 (`concurrency` requests in
 * flight) and returns each one's one-time enrollment token. Any failure fails the setup: a
 * fleet with holes would measure something else.
 */
async function registerClusters(
  stack: BenchStack,
  names: string[],
  labels: Record<string, string>,
  concurrency: number,
): Promise<string[]> {
  const base = `${stack.admin.baseUrl}/api/v1`;
  const headers = { Authorization: `Bearer ${stack.admin.token!}`, 'Content-Type': 'application/json' };
  const post = async <T>(url: string, body: unknown): Promise<T> => {
    for (let attempt = 0; ; attempt++) {
      const res = await fetch(`${base}${url}`, { method: 'POST', headers, body: JSON.stringify(body) });
      const text = await res.text();
      if (res.status === 201) return JSON.parse(text) as T;
      // Only a busy answer is worth another try; anything else is a broken setup.
      if ((res.status === 429 || res.status === 503) && attempt < 10) {
        await sleep(Number(res.headers.get('retry-after') ?? 1) * 1000);
        continue;
      }
      throw new Error(`POST ${url}: HTTP ${res.status} ${text.slice(0, 300)}`);
    }
  };
  const tokens: string[] = new Array<string>(names.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, names.length) }, async () => {
      while (next < names.length) {
        const i = next++;
        const name = names[i]!;
        await post('/clusters', { name, labels });
        tokens[i] = (await post<{ token: string }>(`/clusters/${encodeURIComponent(name)}/enrollment-tokens`, {})).token;
      }
    }),
  );
  return tokens;
}
