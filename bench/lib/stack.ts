import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { EmbeddedPostgres } from '../../apps/control-plane/src/embedded/embedded-postgres.js';
import { EmbeddedRedis } from '../../apps/control-plane/src/embedded/embedded-redis.js';
import { freeLoopbackPort, waitFor } from '../../apps/control-plane/src/embedded/local-process.js';
import { ensureSoftHsmToken } from '../../apps/control-plane/src/hsm/softhsm-dev-token.js';
import { ApiClient } from '../../tests/harness/api-client.js';
import { ControlPlaneProcess } from '../../tests/harness/control-plane-process.js';

const ADMIN_TOKEN = `sgl_bench-admin-${'0'.repeat(32)}`;

/** REST requests per second (and burst) per API token during a benchmark: setup registers thousands of clusters. */
const BENCH_RATE_LIMIT = '100000';

/**
 * What a benchmark runs against, each part a real one on loopback and restartable on the same
 * port: PostgreSQL and Redis as `make up` runs them (durable), a fresh SoftHSM token, and one or
 * more control-plane processes started from the build (`replicas`: each with every role, its own
 * HTTP and gRPC port, all on the same PostgreSQL, Redis, HSM token and data dir). Everything
 * lives in one temp dir.
 */
export class BenchStack {
  /** The control-plane processes, one per replica; a restart replaces them. */
  cps: ControlPlaneProcess[] = [];
  /** The REST client of replica 0, the one the benchmarks publish through. */
  readonly admin: ApiClient;
  /** host:port of every replica's agent gRPC server, replica 0 first. */
  readonly grpcAddresses: string[];
  databaseUrl = '';

  private constructor(
    readonly dir: string,
    readonly postgres: EmbeddedPostgres,
    readonly redis: EmbeddedRedis,
    private readonly cpEnv: Record<string, string>,
    private readonly ports: Array<{ http: number; grpc: number }>,
  ) {
    this.admin = new ApiClient(`http://127.0.0.1:${ports[0]!.http}`, ADMIN_TOKEN);
    this.grpcAddresses = ports.map((p) => `localhost:${p.grpc}`);
  }

  /** `replicas` control-plane processes (default 1). `env` adds to (or overrides) their environment. */
  static async start(env: Record<string, string> = {}, opts: { replicas?: number } = {}): Promise<BenchStack> {
    const replicas = opts.replicas ?? 1;
    const dir = await mkdtemp(path.join(tmpdir(), 'sigil-bench-'));
    await chmod(dir, 0o711); // PostgreSQL's unprivileged server user must be able to enter it
    // Distinct ports: the kernel may hand out a just-closed one again.
    const taken = new Set<number>();
    const free = async (): Promise<number> => {
      for (;;) {
        const port = await freeLoopbackPort();
        if (taken.has(port)) continue;
        taken.add(port);
        return port;
      }
    };
    const [pgPort, redisPort] = [await free(), await free()];
    const ports: Array<{ http: number; grpc: number }> = [];
    for (let i = 0; i < replicas; i++) ports.push({ http: await free(), grpc: await free() });
    const postgres = new EmbeddedPostgres({
      dir: path.join(dir, 'postgres'),
      database: 'sigil',
      durable: true,
      port: pgPort,
      // BENCH_PG_STATS=1: the fleet bench prints the statements that cost PostgreSQL the most.
      settings: process.env.BENCH_PG_STATS === '1' ? ['shared_preload_libraries=pg_stat_statements'] : [],
    });
    const redis = new EmbeddedRedis({ dir: path.join(dir, 'redis'), durable: true, port: redisPort });
    const [pgUrl, redisUrl, hsm] = await Promise.all([
      postgres.start(),
      redis.start(),
      ensureSoftHsmToken(path.join(dir, 'softhsm'), 'bench'),
    ]);
    // Experiments only, e.g. BENCH_PG_OPTIONS='-c synchronous_commit=off'.
    const databaseUrl = process.env.BENCH_PG_OPTIONS ? `${pgUrl}?options=${encodeURIComponent(process.env.BENCH_PG_OPTIONS)}` : pgUrl;
    const cpEnv = {
      SIGIL_DATA_DIR: path.join(dir, 'cp'),
      DATABASE_URL: databaseUrl,
      REDIS_URL: redisUrl,
      SOFTHSM2_CONF: process.env.SOFTHSM2_CONF!,
      SIGIL_PKCS11_MODULE: hsm.module,
      SIGIL_PKCS11_TOKEN_LABEL: hsm.tokenLabel,
      SIGIL_PKCS11_PIN_FILE: path.join(dir, 'softhsm', 'pin'),
      SIGIL_BOOTSTRAP_ADMIN_TOKEN: ADMIN_TOKEN,
      SIGIL_LOG_LEVEL: 'warn',
      // Registration goes through the REST API (bench/fleet/fleet.ts): 20,000 requests at the
      // default 50/s per token would be minutes of setup, so the run raises the limit.
      SIGIL_RATE_LIMIT_RPS: BENCH_RATE_LIMIT,
      SIGIL_RATE_LIMIT_BURST: BENCH_RATE_LIMIT,
      // e.g. BENCH_CP_NODE_OPTIONS=--cpu-prof to see where the control plane's time goes.
      ...(process.env.BENCH_CP_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_CP_NODE_OPTIONS } : {}),
      // Experiments with the control plane's settings: BENCH_CP_SIGIL_GRPC_MAX_HANDSHAKES=256 sets SIGIL_GRPC_MAX_HANDSHAKES.
      ...Object.fromEntries(
        Object.entries(process.env)
          .filter(([k, v]) => k.startsWith('BENCH_CP_SIGIL_') && v !== undefined)
          .map(([k, v]) => [k.slice('BENCH_CP_'.length), v!]),
      ),
      ...env,
    };
    const stack = new BenchStack(dir, postgres, redis, cpEnv, ports);
    stack.databaseUrl = databaseUrl;
    try {
      await stack.startControlPlane();
    } catch (err) {
      // A replica that failed to start must not leave the others, PostgreSQL and Redis running.
      await stack.stop().catch(() => undefined);
      throw err;
    }
    return stack;
  }

  /** The first replica (the only one unless `replicas` > 1). */
  get cp(): ControlPlaneProcess {
    return this.cps[0]!;
  }

  get grpcAddress(): string {
    return this.grpcAddresses[0]!;
  }

  get replicas(): number {
    return this.ports.length;
  }

  /** PIDs of the running control-plane processes. */
  get controlPlanePids(): number[] {
    return this.cps.map((c) => c.child.pid!);
  }

  get hsmToken(): { module: string; tokenLabel: string; pinFile: string } {
    return {
      module: this.cpEnv.SIGIL_PKCS11_MODULE!,
      tokenLabel: this.cpEnv.SIGIL_PKCS11_TOKEN_LABEL!,
      pinFile: this.cpEnv.SIGIL_PKCS11_PIN_FILE!,
    };
  }

  get redisUrl(): string {
    return this.cpEnv.REDIS_URL!;
  }

  /** Starts every replica (in parallel) and waits until each one is ready. */
  async startControlPlane(): Promise<void> {
    this.cps = this.ports.map((p) =>
      ControlPlaneProcess.spawn({ ...this.cpEnv, SIGIL_HTTP_PORT: String(p.http), SIGIL_GRPC_PORT: String(p.grpc) }),
    );
    await Promise.all(
      this.cps.map((cp) =>
        waitFor('control plane', async () => (await fetch(`${cp.url}/readyz`)).ok, {
          timeoutMs: 120_000,
          child: cp.child,
          describe: () => cp.logs().slice(-2000),
        }),
      ),
    );
  }

  /**
   * Stops every replica with `signal` (at once) and starts them again on the same ports, data
   * dir and services. Returns when the stop finished and when all were ready again (epoch ms,
   * comparable with the simulators' clocks).
   */
  /** Sum of a Prometheus counter (all label sets matching `labels`) over every control plane. */
  async counter(name: string, labels: string): Promise<number> {
    const re = new RegExp(`^${name}\\{[^}]*${labels}[^}]*\\} (\\d+)$`, 'gm');
    let sum = 0;
    for (const cp of this.cps) {
      const text = await (await fetch(`${cp.url}/metrics`)).text();
      for (const m of text.matchAll(re)) sum += Number(m[1]);
    }
    return sum;
  }

  async restartControlPlane(signal: NodeJS.Signals): Promise<{ stoppedAt: number; readyAt: number }> {
    await Promise.all(this.cps.map((cp) => cp.stop(signal)));
    const stoppedAt = performance.timeOrigin + performance.now();
    // Where the stop went, when the control plane logs at info (BENCH_CP_SIGIL_LOG_LEVEL=info).
    for (const cp of this.cps)
      for (const line of cp.stdout.split('\n'))
        if (/"msg":"(shut down|agent gRPC stopped)"/.test(line)) process.stderr.write(`[bench]   stop: ${line}\n`);
    await this.startControlPlane();
    return { stoppedAt, readyAt: performance.timeOrigin + performance.now() };
  }

  /** Every replica's log, concatenated. */
  logs(): string {
    return this.cps.map((c) => c.logs()).join('\n');
  }

  /** The trust bundle agents use, written where sim processes can read it. */
  async caPem(): Promise<string> {
    const res = await this.admin.get<{ caCertificatePem: string }>('/agents/trust');
    if (res.status !== 200) throw new Error(`GET /agents/trust: ${res.status} ${res.text}`);
    await writeFile(path.join(this.dir, 'ca.pem'), res.body.caCertificatePem);
    return res.body.caCertificatePem;
  }

  /** With BENCH_PG_STATS=1: starts counting statements; the returned function gives the top ones. */
  async statementStats(): Promise<() => Promise<string>> {
    if (process.env.BENCH_PG_STATS !== '1') return () => Promise.resolve('');
    const { default: pg } = await import('pg');
    const q = async <T>(sql: string): Promise<T[]> => {
      const c = new pg.Client({ connectionString: this.databaseUrl });
      await c.connect();
      try {
        return (await c.query(sql)).rows as T[];
      } finally {
        await c.end();
      }
    };
    await q('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    await q('SELECT pg_stat_statements_reset()');
    return async () => {
      const rows = await q<{ ms: number; calls: string; query: string }>(
        `SELECT round(total_exec_time)::int AS ms, calls, regexp_replace(query, '\\s+', ' ', 'g') AS query
           FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 15`,
      );
      return rows.map((r) => `${String(r.ms).padStart(7)} ms ${String(r.calls).padStart(7)} calls  ${r.query.slice(0, 160)}`).join('\n');
    };
  }

  /** Resident set of each control-plane process, MiB, replica 0 first. */
  async controlPlaneRssMiB(): Promise<number[]> {
    return Promise.all(
      this.cps.map(async (cp) => {
        const status = await readFile(`/proc/${cp.child.pid}/status`, 'utf8');
        return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
      }),
    );
  }

  /**
   * Where each control plane's memory is, MiB, from its default Prometheus metrics: the V8 heap
   * in use and reserved, and memory outside it that V8 knows of (Buffers). The rest of the RSS is
   * native: OpenSSL, nghttp2, code.
   */
  async controlPlaneMemory(): Promise<Array<{ heapUsedMiB: number; heapTotalMiB: number; externalMiB: number }>> {
    const gauge = (text: string, name: string) =>
      Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? NaN) / 2 ** 20;
    return Promise.all(
      this.cps.map(async (cp) => {
        const text = await (await fetch(`${cp.url}/metrics`)).text();
        return {
          heapUsedMiB: gauge(text, 'nodejs_heap_size_used_bytes'),
          heapTotalMiB: gauge(text, 'nodejs_heap_size_total_bytes'),
          externalMiB: gauge(text, 'nodejs_external_memory_bytes'),
        };
      }),
    );
  }

  async stop(): Promise<void> {
    await Promise.all(this.cps.map((cp) => cp.stop('SIGTERM')));
    await Promise.allSettled([this.postgres.stop(), this.redis.stop()]);
    if (process.env.SIGIL_KEEP_BENCH_DIR !== '1') await rm(this.dir, { recursive: true, force: true });
  }
}
