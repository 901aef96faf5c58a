import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { cpuMeter, treeCpuMeter } from '../lib/cpu.js';
import { BenchStack } from '../lib/stack.js';
import { fmtMs, log, machineLine, mark, table, writeResults } from '../lib/results.js';
import { Fleet, sleep, type EnrollResult } from '../fleet/fleet.js';
import { hsmFloor, type Floor } from '../fleet/floors.js';
import { now, type Expectation, type LoginReport } from '../fleet/sim-protocol.js';
import { createRolesFloor, dropRolesFloor, grantStatement, TargetPostgres, type RoleFloor } from './target-postgres.js';

/**
 * bench/leases (issue 20): dynamic secrets for a fleet at once. N simulated agents (bench/fleet:
 * real mTLS gRPC, the agent's own sync code, every envelope opened with the cluster's key) against
 * one control-plane process on real PostgreSQL, Redis and SoftHSM, and a second PostgreSQL server
 * as the customer's database, reached through a registered connection (SCRAM admin with
 * CREATEROLE only).
 *
 *   floors     alone on the machine, same target, same concurrency as the issuer (8 per
 *              connection): N × CREATE ROLE (on open sessions; with the secret's GRANT; with a
 *              SCRAM login per role, as the engine's client per call), N × DROP ROLE, HSM wraps
 *   static     publish an app with one typed secret to all N, until every agent acked: the
 *              delivery floor, through Sigil, in this run
 *   issue      publish an app with one dynamic secret to all N: until every lease is active
 *              (credentials/s) and until every agent acked the state holding its credential
 *   verify     every agent logs in to the target with the DATABASE_URL it decrypted (20 at once)
 *              and reads the granted table; each as its own role, the one its lease names
 *   rotate     revoke every lease by hand (REST): until every agent acked serial 2, the old
 *              roles are gone; then every new credential is verified again
 *   unpublish  until every role is dropped in the target, and every agent deleted its Secret
 *
 *   make bench-leases    # BENCH_LEASE_CLUSTERS=1000 BENCH_SIM_PROCS=2 BENCH_LEASE_ROTATE=1
 */

const N = Number(process.env.BENCH_LEASE_CLUSTERS ?? 1000);
const PROCS = Math.max(1, Math.min(N, Number(process.env.BENCH_SIM_PROCS ?? Math.min(4, Math.ceil(N / 500)))));
/** The issuer's engine calls at once per connection (ENGINE_CONCURRENCY, apps/control-plane/src/leases/lease-work.ts). */
const ENGINE_CONCURRENCY = Number(process.env.BENCH_LEASE_FLOOR_CONCURRENCY ?? 8);
/** Logins at once across the fleet when verifying the credentials. */
const LOGIN_CONCURRENCY = Number(process.env.BENCH_LEASE_LOGIN_CONCURRENCY ?? 20);
const ROTATE = process.env.BENCH_LEASE_ROTATE !== '0';
/** BENCH_PG_STATS=1: the statements that cost each PostgreSQL most, per phase (pg_stat_statements). */
const STATS = process.env.BENCH_PG_STATS === '1';
const ENROLL_CONCURRENCY = Number(process.env.BENCH_ENROLL_CONCURRENCY ?? 64);
const PHASE_TIMEOUT_MS = Number(process.env.BENCH_LEASE_TIMEOUT_MS ?? 600_000);
const PROJECT = 'bench';
const PREFIX = 'sigil_bench_';
const FLOOR_PREFIX = 'floor_';
/**
 * How each role gets its privilege: `table` (default, docs/dynamic-secrets.md's example) grants
 * SELECT on the table to every role, so every issue rewrites that table's ACL — one catalog row
 * for the whole fleet; `role` grants membership in a group role that holds the privilege.
 */
const GRANT = (process.env.BENCH_LEASE_GRANT ?? 'table') as 'table' | 'role';
if (GRANT !== 'table' && GRANT !== 'role') throw new Error('BENCH_LEASE_GRANT must be table or role');
const CREATE = ['CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}', grantStatement(GRANT, '{{name}}')];
const LOGIN = { namespace: 'leases', name: 'orders-db', key: 'DATABASE_URL', sql: 'SELECT item FROM orders' };

interface Sample {
  /** ms since the phase's request. */
  t: number;
  /** Leases of the dynamic secret by state (only those created since the phase's request). */
  states: Record<string, number>;
  /** Roles with the connection's prefix in the target. */
  roles: number;
}

/** Polls Sigil's database and the target every `everyMs` during a phase. */
class Poller {
  samples: Sample[] = [];
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(
    private readonly sigil: pg.Client,
    private readonly target: TargetPostgres,
    private readonly secretId: string,
  ) {}

  start(t0: number, everyMs = 50): void {
    this.samples = [];
    this.timer = setInterval(() => {
      if (this.busy) return;
      this.busy = true;
      void this.sample(t0).finally(() => (this.busy = false));
    }, everyMs);
  }

  async sample(t0: number): Promise<Sample> {
    const t = now() - t0;
    const [states, roles] = await Promise.all([
      this.sigil.query<{ state: string; n: number }>(
        `SELECT state, count(*)::int AS n FROM credential_leases
          WHERE secret_id = $1 AND created_at >= to_timestamp($2 / 1000.0) GROUP BY state`,
        [this.secretId, t0],
      ),
      this.target.roleCount(PREFIX),
    ]);
    const s = { t, states: Object.fromEntries(states.rows.map((r) => [r.state, r.n])), roles };
    this.samples.push(s);
    return s;
  }

  /** The first sample (ms after t0) where `ok` held, waiting for it. */
  async until(what: string, ok: (s: Sample) => boolean, timeoutMs = PHASE_TIMEOUT_MS): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let reported = 0;
    for (;;) {
      const hit = this.samples.find(ok);
      if (hit) return hit.t;
      const last = this.samples.at(-1);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: last ${JSON.stringify(last)}`);
      if (last && Date.now() - reported > 2000) {
        reported = Date.now();
        log(`  … ${what}: ${JSON.stringify(last.states)}, ${last.roles} roles`);
      }
      await sleep(20);
    }
  }

  /** When the share `q` of N first reached `state` (ms after t0). */
  reached(state: string, q: number): number | undefined {
    return this.samples.find((s) => (s.states[state] ?? 0) >= Math.ceil(q * N))?.t;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

interface PhaseResult {
  name: string;
  /** ms from the request until every agent acked. */
  ackedMs: number;
  restMs: number;
  cpuMs: Record<string, number>;
}

async function main(): Promise<void> {
  log(`leases: ${N} clusters in ${PROCS} simulator processes, floors at ${ENGINE_CONCURRENCY} at once`);
  const stack = await BenchStack.start();
  let target: TargetPostgres | undefined;
  let fleet: Fleet | undefined;
  let sigil: pg.Client | undefined;
  try {
    target = await TargetPostgres.start(path.join(stack.dir, 'target'), { stats: STATS });
    const t = target;
    log(`target PostgreSQL on 127.0.0.1:${t.port} (a server of its own; admin role with CREATEROLE, SCRAM)`);

    log('floors (each alone on the machine)…');
    const roleFloors: RoleFloor[] = [];
    for (const f of [
      { shape: 'create', perRole: false },
      { shape: GRANT, perRole: false },
      { shape: GRANT, perRole: true },
    ] as const) {
      const floor = await createRolesFloor(t, { n: N, concurrency: ENGINE_CONCURRENCY, prefix: FLOOR_PREFIX, ...f });
      log(`  ${floor.name}: ${fmtMs(floor.ms)} (${Math.round(N / (floor.ms / 1000))}/s, ${floor.retries} XX000 retries)`);
      roleFloors.push(floor);
      const drop = await dropRolesFloor(t, FLOOR_PREFIX, ENGINE_CONCURRENCY);
      // The last drop (of roles with the grant) is the revocation floor.
      if (f.perRole) roleFloors.push(drop);
    }
    log(`  ${roleFloors.at(-1)!.name}: ${fmtMs(roleFloors.at(-1)!.ms)}`);
    const hsm: Floor = await hsmFloor(stack.hsmToken, N);
    log(`  ${hsm.name}: ${fmtMs(hsm.ms)} (${hsm.what})`);
    const floor = (name: string) => roleFloors.find((f) => f.name === name)!;

    log(`registering ${N} clusters through the REST API…`);
    fleet = await Fleet.create(stack, { size: N, processes: PROCS, prefix: 'store', labels: { fleet: 'bench' }, keepValues: true });
    const f = fleet;
    const registration = fleet.registration!;
    log(`  ${N} clusters and tokens in ${fmtMs(registration.durationMs)}, setup`);
    const meter = () => {
      const rest = cpuMeter({
        'control plane': (pid) => stack.controlPlanePids.includes(pid),
        postgres: (_pid, comm) => comm === 'postgres', // replaced by the two servers' tree meters below
        Redis: (_pid, comm) => comm.startsWith('redis'),
        'simulated agents': (pid) => f.pids.includes(pid),
        'bench driver': (pid) => pid === process.pid,
      });
      const sigilPg = treeCpuMeter(postmasterPid(stack));
      const targetPg = treeCpuMeter(t.pid);
      return () => {
        const { postgres: _both, ...out } = rest();
        return { ...out, PostgreSQL: sigilPg(), 'target PostgreSQL': targetPg() } as Record<string, number>;
      };
    };

    log(`enrolling ${N} agents…`);
    const enroll: EnrollResult = await fleet.enroll(ENROLL_CONCURRENCY);
    if (enroll.failed > 0) throw new Error(`${enroll.failed} enrollment failures: ${JSON.stringify(enroll.errorKinds)}`);
    log(`  ${enroll.ok} enrolled in ${fmtMs(enroll.durationMs)}; opening the Sync streams…`);
    await fleet.watch(300_000);
    await fleet.expect({ phase: 'idle', secrets: 0, namespace: 'leases' }, 300_000);
    await fleet.inSync(300_000);
    log('  every agent connected and in sync');

    const api = stack.admin;
    const ok = (r: { status: number; text: string }, what: string) => {
      if (r.status >= 300) throw new Error(`${what}: ${r.status} ${r.text.slice(0, 300)}`);
    };
    ok(await api.post('/projects', { name: PROJECT }), 'create project');
    ok(await api.put(`/projects/${PROJECT}/cluster-selector`, { selector: {} }), 'cluster selector');
    ok(await api.put(`/projects/${PROJECT}/namespaces`, { namespaces: ['static', 'leases'] }), 'namespaces');
    ok(await api.post(`/projects/${PROJECT}/apps`, { name: 'config', namespace: 'static', deliveryMode: 'env' }), 'create app config');
    ok(await api.post(`/projects/${PROJECT}/apps`, { name: 'orders', namespace: 'leases', deliveryMode: 'env' }), 'create app orders');
    ok(
      await api.post(`/projects/${PROJECT}/apps/config/secrets`, { name: 'config', data: { VALUE: randomBytes(32).toString('hex') } }),
      'static secret',
    );
    ok(await api.post(`/projects/${PROJECT}/connections`, t.connectionRequest('orders-db', PREFIX)), 'connection');
    const verified = await api.post<{ serverVersion: string; canCreateRoles: boolean }>(
      `/projects/${PROJECT}/connections/orders-db/verify`,
    );
    ok(verified, 'verify connection');
    log(`  connection verified: PostgreSQL ${verified.body.serverVersion}, canCreateRoles ${verified.body.canCreateRoles}`);
    ok(
      await api.post(`/projects/${PROJECT}/apps/orders/secrets`, {
        name: 'orders-db',
        dynamic: {
          connection: 'orders-db',
          creationStatements: CREATE,
          ttlSeconds: 86_400,
          renewBeforeSeconds: 21_600,
          graceSeconds: 600,
          keys: {
            username: '{{username}}',
            password: '{{password}}',
            DATABASE_URL: 'postgresql://{{username}}:{{password}}@{{host}}:{{port}}/{{database}}?sslmode={{sslmode}}',
          },
        },
      }),
      'dynamic secret',
    );

    sigil = new pg.Client({ connectionString: stack.databaseUrl });
    await sigil.connect();
    const db = sigil;
    const secretId = (await db.query<{ id: string }>(`SELECT id FROM secrets WHERE name = 'orders-db'`)).rows[0]!.id;
    const poller = new Poller(db, t, secretId);

    const phases: PhaseResult[] = [];
    /** Runs `request`, then waits until every agent met `expectation`; `during` runs meanwhile (from the request on). */
    const phase = async (name: string, request: () => Promise<void>, expectation: Expectation) => {
      log(`${name}…`);
      const sigilTop = await stack.statementStats();
      const targetTop = STATS ? await t.statementStats() : undefined;
      const cpu = meter();
      const t0 = now();
      poller.start(t0);
      await request();
      const restMs = now() - t0;
      const lastAck = await f.expect(expectation, PHASE_TIMEOUT_MS, progress('acked'));
      const result: PhaseResult = { name, ackedMs: lastAck - t0, restMs, cpuMs: {} };
      phases.push(result);
      log(`  every agent acked ${fmtMs(result.ackedMs)} after the request (REST ${fmtMs(restMs)}); ${f.describeSims()}`);
      const finish = async () => {
        result.cpuMs = cpu();
        poller.stop();
        const [a, b] = [await sigilTop(), await targetTop?.()];
        if (a) log(`statements that cost Sigil's PostgreSQL most during ${name}:\n${a}`);
        if (b) log(`statements that cost the target PostgreSQL most during ${name}:\n${b}`);
      };
      return { t0, result, finish };
    };
    const publish = (app: string) => async () =>
      ok(await api.post(`/projects/${PROJECT}/apps/${app}/publish`, { selector: { matchLabels: { fleet: 'bench' } } }), `publish ${app}`);

    // The delivery floor through Sigil: the same fan-out with a typed secret.
    const stat = await phase('publish a typed secret (delivery floor)', publish('config'), {
      phase: 'static',
      secrets: 1,
      namespace: 'static',
    });
    await stat.finish();

    // Issue: publish the app with the dynamic secret.
    const issue = await phase('publish the dynamic secret (issue)', publish('orders'), {
      phase: 'issue',
      secrets: 1,
      namespace: 'leases',
    });
    const allActiveMs = await poller.until('every lease active', (s) => (s.states.active ?? 0) >= N);
    await issue.finish();
    const issueSamples = poller.samples;
    const issued = {
      firstIntentMs: poller.samples.find((s) => (s.states.intent ?? 0) + (s.states.active ?? 0) > 0)?.t,
      firstRoleMs: poller.samples.find((s) => s.roles > 0)?.t,
      firstActiveMs: poller.reached('active', 1 / N),
      p10ActiveMs: poller.reached('active', 0.1),
      p50ActiveMs: poller.reached('active', 0.5),
      p90ActiveMs: poller.reached('active', 0.9),
      allActiveMs,
      ackedMs: issue.result.ackedMs,
      failedSeen: Math.max(0, ...poller.samples.map((s) => s.states.failed ?? 0)),
      perSecond: N / (allActiveMs / 1000),
      aclEntries: await t.ordersAclEntries(),
    };
    const steadyPerSecond =
      issued.p10ActiveMs !== undefined && issued.p90ActiveMs !== undefined && issued.p90ActiveMs > issued.p10ActiveMs
        ? (0.8 * N) / ((issued.p90ActiveMs - issued.p10ActiveMs) / 1000)
        : NaN;
    log(
      `  every lease active ${fmtMs(allActiveMs)} after publish (${issued.perSecond.toFixed(0)} credentials/s; 10→90 %: ${steadyPerSecond.toFixed(0)}/s); first role ${fmtMs(issued.firstRoleMs ?? NaN)}, first active ${fmtMs(issued.firstActiveMs ?? NaN)}`,
    );

    const verify = async (what: string, since: number) => {
      log(`verify (${what}): every agent logs in with its credential…`);
      const r = await f.login({ ...LOGIN, concurrency: Math.max(1, Math.ceil(LOGIN_CONCURRENCY / PROCS)) });
      const check = await checkRoles(db, secretId, r, since);
      log(`  ${r.ok} logged in, ${r.failed} failed, ${r.missing} without the Secret, in ${fmtMs(r.ms)}; ${JSON.stringify(check)}`);
      if (Object.keys(r.errorKinds).length > 0) log(`  login failures: ${JSON.stringify(r.errorKinds)}`);
      return { ...check, ok: r.ok, failed: r.failed, missing: r.missing, ms: r.ms, errorKinds: r.errorKinds };
    };
    const verified1 = await verify('issued', issue.t0);
    const issueFailures = await failures(db, secretId, issue.t0);
    if (issueFailures.length > 0) log(`  failed attempts during the issue: ${JSON.stringify(issueFailures)}`);
    const rolesAfterIssue = await t.roleCount(PREFIX);

    let rotation:
      | {
          revokeRestMs: number;
          ackedMs: number;
          allActiveMs: number;
          oldRolesGoneMs: number;
          verify: Awaited<ReturnType<typeof verify>>;
          failures: Array<{ error: string; n: number }>;
        }
      | undefined;
    if (ROTATE) {
      const ids = (await db.query<{ id: string }>(`SELECT id FROM credential_leases WHERE secret_id = $1 AND state = 'active'`, [secretId]))
        .rows;
      const rot = await phase(
        'revoke every lease by hand (rotate)',
        async () => {
          let next = 0;
          await Promise.all(
            Array.from({ length: 16 }, async () => {
              while (next < ids.length) {
                const id = ids[next++]!.id;
                ok(await api.post(`/projects/${PROJECT}/apps/orders/leases/${id}/revoke`), 'revoke');
              }
            }),
          );
        },
        { phase: 'rotate', secrets: 1, namespace: 'leases', version: { name: 'orders-db', atLeast: 2 } },
      );
      const rotActive = await poller.until('every fresh lease active', (s) => (s.states.active ?? 0) >= N);
      const oldGone = await poller.until('the old roles dropped', (s) => s.roles <= N && (s.states.active ?? 0) >= N);
      await rot.finish();
      log(`  a fresh lease active everywhere ${fmtMs(rotActive)} after the first revoke; old roles gone ${fmtMs(oldGone)}`);
      const rotFailures = await failures(db, secretId, rot.t0);
      if (rotFailures.length > 0) log(`  failed attempts during the rotation: ${JSON.stringify(rotFailures)}`);
      rotation = {
        revokeRestMs: rot.result.restMs,
        ackedMs: rot.result.ackedMs,
        allActiveMs: rotActive,
        oldRolesGoneMs: oldGone,
        verify: await verify('rotated', rot.t0),
        failures: rotFailures,
      };
    }

    // Unpublish: every role dropped in the target, every agent deleted its Secret.
    const unpub = await phase(
      'unpublish (revoke)',
      async () => ok(await api.post(`/projects/${PROJECT}/apps/orders/unpublish`, {}), 'unpublish'),
      { phase: 'unpublish', secrets: 0, namespace: 'leases' },
    );
    const rolesGoneMs = await poller.until('every role dropped in the target', (s) => s.roles === 0);
    await unpub.finish();
    const revokedStates = (
      await db.query<{ state: string; n: number }>(
        'SELECT state, count(*)::int AS n FROM credential_leases WHERE secret_id = $1 GROUP BY state',
        [secretId],
      )
    ).rows;
    log(`  every role dropped ${fmtMs(rolesGoneMs)} after unpublish; leases now ${JSON.stringify(revokedStates)}`);

    const errors = controlPlaneErrors(stack);
    if (errors.size > 0) log(`control-plane warnings and errors:\n${[...errors].map(([k, n]) => `  ${n}× ${k}`).join('\n')}`);

    const [staticPhase, issuePhase] = phases as [PhaseResult, PhaseResult];
    const unpublishPhase = phases.at(-1)!;
    const rotatePhase = ROTATE ? phases[2] : undefined;
    const x = (ms: number, floorMs: number) => `${(ms / floorMs).toFixed(1)}×`;
    const raw = floor('CREATE ROLE');
    const withGrant = floor('CREATE ROLE + GRANT');
    const perLogin = floor('CREATE ROLE + GRANT, a login per role');
    const drop = floor('DROP ROLE');
    const rows: Array<Array<string | number>> = [
      [
        `issue: every lease active`,
        `${fmtMs(allActiveMs)} (${issued.perSecond.toFixed(0)} credentials/s; 10→90 % at ${steadyPerSecond.toFixed(0)}/s)`,
        `${x(allActiveMs, raw.ms)} CREATE ROLE; ${x(allActiveMs, withGrant.ms)} CREATE ROLE + GRANT; ${x(allActiveMs, perLogin.ms)} with a login per role`,
      ],
      [
        'issue: every agent acked its credential',
        `${fmtMs(issuePhase.ackedMs)} (REST ${fmtMs(issuePhase.restMs)})`,
        `${x(issuePhase.ackedMs, staticPhase.ackedMs)} typed-secret publish (${fmtMs(staticPhase.ackedMs)}); ${x(issuePhase.ackedMs, hsm.ms)} HSM wraps`,
      ],
      [
        `verify: every cluster's credential logs in (${LOGIN_CONCURRENCY} at once)`,
        `${verified1.ok}/${N} ${mark(verified1.ok === N)} in ${fmtMs(verified1.ms)}; ${verified1.distinctRoles} distinct roles, ${verified1.matchingLease} match their cluster's lease ${mark(verified1.matchingLease === N)}`,
        '',
      ],
    ];
    if (rotation && rotatePhase)
      rows.push(
        [
          'rotate (revoke all by hand): every agent acked a fresh credential',
          `${fmtMs(rotation.ackedMs)} (the ${N} REST revokes took ${fmtMs(rotation.revokeRestMs)}); every fresh lease active ${fmtMs(rotation.allActiveMs)}; old roles gone ${fmtMs(rotation.oldRolesGoneMs)}; ${rotation.failures.reduce((a, b) => a + b.n, 0)} failed attempts`,
          `${x(rotation.allActiveMs, withGrant.ms + drop.ms)} CREATE + DROP floors`,
        ],
        [
          'verify after rotation',
          `${rotation.verify.ok}/${N} ${mark(rotation.verify.ok === N)} in ${fmtMs(rotation.verify.ms)}; ${rotation.verify.matchingLease} match their cluster's fresh lease ${mark(rotation.verify.matchingLease === N)}`,
          '',
        ],
      );
    rows.push(
      [
        'unpublish: every role dropped in the target',
        `${fmtMs(rolesGoneMs)} (every agent deleted its Secret after ${fmtMs(unpublishPhase.ackedMs)})`,
        `${x(rolesGoneMs, drop.ms)} DROP ROLE`,
      ],
      ...phases.map((p) => [
        `${p.name}: control plane + PostgreSQL + target CPU per cluster`,
        `${(((p.cpuMs['control plane'] ?? 0) + (p.cpuMs.PostgreSQL ?? 0) + (p.cpuMs['target PostgreSQL'] ?? 0)) / N).toFixed(2)} ms`,
        '',
      ]),
    );
    const timeline = quantiles(issueSamples);
    const md = [
      `bench/leases — ${machineLine()}`,
      '',
      `${N} simulated agents in ${PROCS} processes (bench/fleet: real mTLS gRPC, the agent's sync code, every envelope opened with the cluster's key, values kept to log in), one control-plane process, PostgreSQL, Redis and SoftHSM, and a second PostgreSQL server (durable, loopback) as the target database, all on the same machine. One dynamic secret (\`${CREATE.join('; ')}\`), keys username/password/DATABASE_URL. Setup (not measured): ${N} clusters registered in ${fmtMs(registration.durationMs)}, enrolled in ${fmtMs(enroll.durationMs)}.`,
      '',
      table(['measurement', 'result', 'vs floor'], rows),
      '',
      `Issue timeline (ms after the publish request): first intent ${ms(issued.firstIntentMs)}, first role ${ms(issued.firstRoleMs)}, first active ${ms(issued.firstActiveMs)}; active at 10 % ${ms(issued.p10ActiveMs)}, 50 % ${ms(issued.p50ActiveMs)}, 90 % ${ms(issued.p90ActiveMs)}, 100 % ${ms(allActiveMs)}. Roles in the target by then: ${rolesAfterIssue}; ACL entries on \`orders\`: ${issued.aclEntries}. Failed attempts (each retried after its backoff): ${issueFailures.length === 0 ? 'none' : issueFailures.map((x) => `${x.n}× ${x.error}`).join('; ')}.`,
      '',
      `Active leases by time: ${timeline}`,
      '',
      'Floors, each measured alone in this run:',
      '',
      table(
        ['floor', 'time', 'rate', 'what'],
        [
          ...roleFloors.map((fl) => [
            fl.name,
            fmtMs(fl.ms),
            `${Math.round(N / (fl.ms / 1000))}/s`,
            `${fl.what}${fl.retries ? `; ${fl.retries} XX000 retries` : ''}`,
          ]),
          [hsm.name, fmtMs(hsm.ms), '', hsm.what],
          [
            `typed-secret publish`,
            fmtMs(staticPhase.ackedMs),
            '',
            `a one-secret app published to all ${N} through Sigil, until every agent acked (phase above)`,
          ],
        ],
      ),
      '',
      'Where the CPU went (CPU seconds per process during each phase, from /proc; PostgreSQL includes exited backends; the machine has 2 cores):',
      '',
      cpuTable(phases),
    ].join('\n');
    process.stdout.write(`${md}\n`);
    await writeResults(
      `leases-${N}${GRANT === 'role' ? '-group-role' : ''}`,
      {
        clusters: N,
        grant: GRANT,
        creationStatements: CREATE,
        processes: PROCS,
        engineConcurrency: ENGINE_CONCURRENCY,
        loginConcurrency: LOGIN_CONCURRENCY,
        registration,
        enroll,
        phases,
        issued: { ...issued, steadyPerSecond, rolesAfterIssue, failures: issueFailures },
        issueSamples,
        verify: verified1,
        rotation,
        unpublish: { rolesGoneMs, ackedMs: unpublishPhase.ackedMs, leases: revokedStates },
        floors: { roles: roleFloors, hsm },
        controlPlaneErrors: Object.fromEntries(errors),
      },
      md,
    );
  } catch (err) {
    const errors = controlPlaneErrors(stack);
    process.stderr.write(`control-plane warnings and errors:\n${[...errors].map(([k, n]) => `  ${n}× ${k}`).join('\n')}\n`);
    throw err;
  } finally {
    await sigil?.end().catch(() => undefined);
    await fleet?.stop();
    await stack.stop().catch(() => undefined);
    await target?.stop().catch(() => undefined);
  }
}

/**
 * Each agent logged in as the role its cluster's active lease names, a lease issued since
 * `since` (epoch ms: so the credentials are per cluster, and the current ones), and no two as the
 * same one.
 */
async function checkRoles(db: pg.Client, secretId: string, r: LoginReport, since: number) {
  const { rows } = await db.query<{ cluster: string; role: string }>(
    `SELECT c.name AS cluster, l.role_name AS role FROM credential_leases l JOIN clusters c ON c.id = l.cluster_id
      WHERE l.secret_id = $1 AND l.state = 'active' AND l.created_at >= to_timestamp($2 / 1000.0)`,
    [secretId, since],
  );
  const lease = new Map(rows.map((x) => [x.cluster, x.role]));
  let matchingLease = 0;
  r.clusters.forEach((c, i) => {
    if (r.usernames[i] && lease.get(c) === r.usernames[i]) matchingLease++;
  });
  return { distinctRoles: new Set(r.usernames.filter(Boolean)).size, matchingLease };
}

/** Issues that failed since `since` (epoch ms), by error (the engine's code and message: no value, no statement). */
async function failures(db: pg.Client, secretId: string, since: number): Promise<Array<{ error: string; n: number }>> {
  const { rows } = await db.query<{ error: string; n: number }>(
    `SELECT coalesce(last_error, '?') AS error, count(*)::int AS n FROM credential_leases
      WHERE secret_id = $1 AND state = 'failed' AND created_at >= to_timestamp($2 / 1000.0) GROUP BY 1 ORDER BY 2 DESC`,
    [secretId, since],
  );
  return rows;
}

function postmasterPid(stack: BenchStack): number {
  return Number(readFileSync(path.join(stack.postgres.pgdata, 'postmaster.pid'), 'utf8').split('\n')[0]);
}

/** Active leases at each second of the issue: "1 s: 120, 2 s: 300, …". */
function quantiles(samples: Sample[]): string {
  const out: string[] = [];
  for (let s = 1; ; s++) {
    const upTo = samples.filter((x) => x.t <= s * 1000).at(-1);
    if (!upTo) continue;
    out.push(`${s} s: ${upTo.states.active ?? 0}`);
    if ((upTo.states.active ?? 0) >= N || s > 600) break;
  }
  return out.join(', ');
}

const ms = (v: number | undefined) => (v === undefined ? '—' : fmtMs(v));

function controlPlaneErrors(stack: BenchStack): Map<string, number> {
  const kinds = new Map<string, number>();
  for (const l of stack
    .logs()
    .split('\n')
    .filter((line) => /"level":(40|50|60|"warn"|"error"|"fatal")/.test(line))) {
    const msg = /"msg":"([^"]*)"/.exec(l)?.[1] ?? l.slice(0, 120);
    const err = /"(?:error|message)":"([^"]{0,160})/.exec(l)?.[1] ?? '';
    kinds.set(`${msg}: ${err}`, (kinds.get(`${msg}: ${err}`) ?? 0) + 1);
  }
  return kinds;
}

function cpuTable(phases: PhaseResult[]): string {
  const roles = ['control plane', 'PostgreSQL', 'target PostgreSQL', 'Redis', 'simulated agents', 'bench driver', 'other'];
  return table(
    ['phase', ...roles],
    phases.map((p) => [`${p.name} (${fmtMs(p.ackedMs)})`, ...roles.map((role) => ((p.cpuMs[role] ?? 0) / 1000).toFixed(1))]),
  );
}

function progress(what: string): (n: number) => void {
  let last = 0;
  return (n) => {
    if (Date.now() - last < 2000) return;
    last = Date.now();
    log(`  … ${n}/${N} ${what}`);
  };
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench/leases failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
