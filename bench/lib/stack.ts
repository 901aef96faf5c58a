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

/**
 * What a benchmark runs against, each part a real one on loopback and restartable on the same
 * port: PostgreSQL and Redis as `make up` runs them (durable), a fresh SoftHSM token, and one
 * control-plane process started from the build. Everything lives in one temp dir.
 */
export class BenchStack {
  cp!: ControlPlaneProcess;
  readonly admin: ApiClient;
  readonly grpcAddress: string;
  databaseUrl = '';

  private constructor(
    readonly dir: string,
    readonly postgres: EmbeddedPostgres,
    readonly redis: EmbeddedRedis,
    private readonly cpEnv: Record<string, string>,
    readonly httpPort: number,
    grpcPort: number,
  ) {
    this.admin = new ApiClient(`http://127.0.0.1:${httpPort}`, ADMIN_TOKEN);
    this.grpcAddress = `localhost:${grpcPort}`;
  }

  static async start(env: Record<string, string> = {}): Promise<BenchStack> {
    const dir = await mkdtemp(path.join(tmpdir(), 'sigil-bench-'));
    await chmod(dir, 0o711); // PostgreSQL's unprivileged server user must be able to enter it
    const [pgPort, redisPort, httpPort, grpcPort] = (await Promise.all([1, 2, 3, 4].map(() => freeLoopbackPort()))) as [
      number,
      number,
      number,
      number,
    ];
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
      SIGIL_HTTP_PORT: String(httpPort),
      SIGIL_GRPC_PORT: String(grpcPort),
      DATABASE_URL: databaseUrl,
      REDIS_URL: redisUrl,
      SOFTHSM2_CONF: process.env.SOFTHSM2_CONF!,
      SIGIL_PKCS11_MODULE: hsm.module,
      SIGIL_PKCS11_TOKEN_LABEL: hsm.tokenLabel,
      SIGIL_PKCS11_PIN_FILE: path.join(dir, 'softhsm', 'pin'),
      SIGIL_BOOTSTRAP_ADMIN_TOKEN: ADMIN_TOKEN,
      SIGIL_LOG_LEVEL: 'warn',
      // e.g. BENCH_CP_NODE_OPTIONS=--cpu-prof to see where the control plane's time goes.
      ...(process.env.BENCH_CP_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_CP_NODE_OPTIONS } : {}),
      ...env,
    };
    const stack = new BenchStack(dir, postgres, redis, cpEnv, httpPort, grpcPort);
    stack.databaseUrl = databaseUrl;
    await stack.startControlPlane();
    return stack;
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

  async startControlPlane(): Promise<void> {
    this.cp = ControlPlaneProcess.spawn(this.cpEnv);
    await waitFor('control plane', async () => (await fetch(`${this.admin.baseUrl}/readyz`)).ok, {
      timeoutMs: 120_000,
      child: this.cp.child,
      describe: () => this.cp.logs().slice(-2000),
    });
  }

  async restartControlPlane(signal: NodeJS.Signals): Promise<void> {
    await this.cp.stop(signal);
    await this.startControlPlane();
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

  /** Resident set of the control-plane process, MiB. */
  async controlPlaneRssMiB(): Promise<number> {
    const status = await readFile(`/proc/${this.cp.child.pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
  }

  async stop(): Promise<void> {
    await this.cp?.stop('SIGTERM');
    await Promise.allSettled([this.postgres.stop(), this.redis.stop()]);
    if (process.env.SIGIL_KEEP_BENCH_DIR !== '1') await rm(this.dir, { recursive: true, force: true });
  }
}
