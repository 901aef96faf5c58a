import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';
import { BenchStack } from '../lib/stack.js';
import { fmtMs, log, machineLine, mark, table, writeResults } from '../lib/results.js';
import { Fleet, sleep } from './fleet.js';
import { now } from './sim-protocol.js';
import { eventually } from '../../tests/harness/eventually.js';

/**
 * bench/faults: one fault injected in the middle of each 1,000-cluster publish, against the same
 * simulated fleet as bench/fleet (clusters registered through the REST API, one Sync stream per
 * agent). A round passes when every agent ends up holding (and has
 * acked) exactly the app's K secrets, the control plane reports every cluster provisioned, and
 * no cluster's snapshot holds a stale version: converged, nothing lost, nothing stale.
 *
 *   make bench-faults                      # BENCH_FAULT_AGENTS=1000
 */

const N = Number(process.env.BENCH_FAULT_AGENTS ?? 1_000);
const K = Number(process.env.BENCH_SECRETS ?? 10);
const PROCS = Number(process.env.BENCH_SIM_PROCS ?? 4);
/** Inject once this share of agents acked the publish (or after FAULT_AFTER_MS, whichever is first). */
const FAULT_AT_SHARE = 0.3;
const FAULT_AFTER_MS = 3_000;

interface Fault {
  name: string;
  how: string;
  inject(stack: BenchStack, fleet: Fleet): Promise<void>;
}

const FAULTS: Fault[] = [
  {
    name: 'control plane SIGKILL',
    how: 'SIGKILL the only control-plane process, start it again (same ports)',
    async inject(stack) {
      await stack.restartControlPlane('SIGKILL');
    },
  },
  {
    name: 'Redis FLUSHALL',
    how: 'FLUSHALL on the running Redis: every queued job, lock and stored key gone at once',
    async inject(stack) {
      const redis = new Redis(stack.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
      try {
        await redis.connect();
        await redis.flushall();
      } finally {
        redis.disconnect();
      }
    },
  },
  {
    name: 'Redis restart',
    how: 'stop redis-server (queue, pub/sub and locks gone for 2 s), start it again',
    async inject(stack) {
      await stack.redis.stop();
      await sleep(2_000);
      await stack.redis.start();
    },
  },
  {
    name: 'PostgreSQL restart',
    how: 'stop PostgreSQL (every connection dropped, 2 s down), start it again',
    async inject(stack) {
      await stack.postgres.stop();
      await sleep(2_000);
      await stack.postgres.start();
    },
  },
  {
    name: 'agent restarts',
    how: 'SIGKILL every simulated-agent process, start them again from their saved identities (in-memory Kubernetes lost)',
    inject: (_stack, fleet) => fleet.restartAgents(),
  },
  {
    name: 'HSM session loss',
    how: 'every PKCS#11 session of the control plane closed (C_CloseAllSessions) mid-build',
    inject: (stack) => Promise.resolve(void stack.cps.forEach((cp) => cp.child.kill('SIGUSR2'))),
  },
];

interface Round {
  fault: string;
  how: string;
  injectedAtMs: number;
  ackedBeforeFault: number;
  convergedMs: number;
  recoveryMs: number;
  summary: Record<string, unknown>;
  snapshotRows: number;
  stale: number;
  passed: boolean;
}

async function main(): Promise<void> {
  const only = process.env.BENCH_FAULTS?.split(',');
  const faults = only ? FAULTS.filter((f) => only.some((o) => f.name.includes(o))) : FAULTS;
  log(`faults: ${N} agents, ${K} secrets, ${faults.length} faults`);
  const stack = await BenchStack.start({ SIGIL_FAULT_INJECTION: '1' });
  let fleet: Fleet | undefined;
  try {
    fleet = await Fleet.create(stack, { size: N, processes: PROCS, prefix: 'shop', labels: { fleet: 'faults' } });
    const enrolled = await fleet.enroll(64);
    if (enrolled.failed > 0) throw new Error(`enrollment failures: ${enrolled.errors.join('; ')}`);
    await fleet.watch(300_000);
    await fleet.expect({ phase: 'idle', secrets: 0, namespace: 'none' }, 300_000);
    log(`${N} agents enrolled and watching`);

    const api = stack.admin;
    const ok = (r: { status: number; text: string }, what: string) => {
      if (r.status >= 300) throw new Error(`${what}: ${r.status} ${r.text}`);
    };
    ok(await api.post('/projects', { name: 'faults' }), 'project');
    ok(await api.put('/projects/faults/cluster-selector', { selector: {} }), 'selector');

    const rounds: Round[] = [];
    for (const [i, fault] of faults.entries()) {
      const app = `app${i}`;
      const namespace = `ns${i}`;
      ok(await api.put('/projects/faults/namespaces', { namespaces: faults.map((_, j) => `ns${j}`) }), 'namespaces');
      ok(await api.post('/projects/faults/apps', { name: app, namespace, deliveryMode: 'env' }), 'app');
      for (let s = 0; s < K; s++)
        ok(
          await api.post(`/projects/faults/apps/${app}/secrets`, { name: `s${s}`, data: { V: randomBytes(16).toString('hex') } }),
          'secret',
        );

      log(`${fault.name}: publishing ${app} to ${N} clusters…`);
      const t0 = now();
      fleet.announce({ phase: app, secrets: K, namespace });
      ok(await api.post(`/projects/faults/apps/${app}/publish`, { selector: { matchLabels: { fleet: 'faults' } } }), 'publish');
      const until = Date.now() + FAULT_AFTER_MS;
      while (fleet.metCount(app) < N * FAULT_AT_SHARE && Date.now() < until) await sleep(5);
      const ackedBeforeFault = fleet.metCount(app);
      const injectedAt = now();
      log(`  injecting after ${fmtMs(injectedAt - t0)} (${ackedBeforeFault}/${N} acked)`);
      await fault.inject(stack, fleet);
      const last = await fleet.acked(app, 600_000);
      // The control plane must agree: every cluster provisioned, every snapshot current.
      const summary = await eventuallyProvisioned(stack, app, 120_000);
      const db = new pg.Client({ connectionString: stack.databaseUrl });
      await db.connect();
      const [check] = (
        await db.query<{ rows: string; stale: string }>(
          `SELECT count(*) AS rows, count(*) FILTER (WHERE cs.secret_version <> s.current_version) AS stale
             FROM cluster_secrets cs JOIN secrets s ON s.id = cs.secret_id JOIN apps a ON a.id = s.app_id
            WHERE a.name = $1`,
          [app],
        )
      ).rows;
      await db.end();
      const round: Round = {
        fault: fault.name,
        how: fault.how,
        injectedAtMs: injectedAt - t0,
        ackedBeforeFault,
        convergedMs: Math.max(last, injectedAt) - t0,
        recoveryMs: Math.max(0, last - injectedAt),
        summary,
        snapshotRows: Number(check!.rows),
        stale: Number(check!.stale),
        passed: false,
      };
      round.passed = round.snapshotRows === N * K && round.stale === 0 && summary.provisioned === N && summary.failed === 0;
      rounds.push(round);
      log(
        `  converged ${fmtMs(round.convergedMs)} after publish; ${round.snapshotRows} snapshot rows, ${round.stale} stale ${mark(round.passed)}`,
      );
    }

    const md = [
      `bench/faults — ${machineLine()}`,
      '',
      `Each round publishes a new app with ${K} secrets to ${N} simulated agents (separate processes, real mTLS gRPC) and injects one fault once ${FAULT_AT_SHARE * 100}% of them acked (or after ${FAULT_AFTER_MS / 1000} s). Passed = every agent holds and acked all ${K} secrets, the control plane reports all ${N} clusters provisioned with none failed, and all ${N * K} snapshot rows are current.`,
      '',
      table(
        ['fault', 'injected at', 'acked before', 'all acked at', 'recovery after fault', 'provisioned', 'snapshot rows / stale', 'passed'],
        rounds.map((r) => [
          r.fault,
          fmtMs(r.injectedAtMs),
          `${r.ackedBeforeFault}/${N}`,
          fmtMs(r.convergedMs),
          fmtMs(r.recoveryMs),
          `${String(r.summary.provisioned)}/${N}`,
          `${r.snapshotRows} / ${r.stale}`,
          mark(r.passed),
        ]),
      ),
      '',
      ...rounds.map((r) => `- **${r.fault}**: ${r.how}.`),
    ].join('\n');
    process.stdout.write(`${md}\n`);
    await writeResults(`faults-${N}`, { agents: N, secrets: K, rounds }, md);
    if (rounds.some((r) => !r.passed)) throw new Error('a fault round did not converge cleanly');
  } catch (err) {
    const errors = stack
      .logs()
      .split('\n')
      .filter((l) => /error/i.test(l));
    process.stderr.write(`control-plane error lines (${errors.length}), last ones:\n${errors.slice(-5).join('\n')}\n`);
    throw err;
  } finally {
    await fleet?.stop();
    await stack.stop();
  }
}

/** The publication's summary once every cluster is provisioned, or the last one seen after `timeoutMs`. */
async function eventuallyProvisioned(stack: BenchStack, app: string, timeoutMs: number): Promise<Record<string, number>> {
  let last: Record<string, number> = {};
  const provisioned = async () => {
    const res = await stack.admin.get<{ summary: Record<string, number> }>(`/projects/faults/apps/${app}/publication`);
    if (res.status === 200) last = res.body.summary;
    return last.provisioned === N ? last : undefined;
  };
  return eventually(`${app} provisioned`, provisioned, timeoutMs, 200).catch(() => last);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench/faults failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
