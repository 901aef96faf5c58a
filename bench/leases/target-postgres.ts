import { createHash, createHmac, pbkdf2, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { EmbeddedPostgres } from '../../apps/control-plane/src/embedded/embedded-postgres.js';
import { freeLoopbackPort } from '../../apps/control-plane/src/embedded/local-process.js';
import { now } from '../fleet/sim-protocol.js';

/**
 * The customer's database the lease bench issues credentials in: a PostgreSQL server of its own
 * (not Sigil's), durable like a real one, with a database `orders` holding a table `orders`, and
 * an admin role with CREATEROLE only, logging in with SCRAM (docs/dynamic-secrets.md, "The admin
 * role"; tests/harness/target-database.ts sets up the tests' one the same way).
 */
/** The group role of the `role` grant variant. */
export const GROUP_ROLE = 'orders_reader';

export class TargetPostgres {
  readonly database = 'orders';
  readonly admin = 'sigil_admin';
  readonly adminPassword = randomBytes(18).toString('base64url');
  readonly host = '127.0.0.1';
  private superuserUrl = '';
  private su: pg.Client | undefined;

  private constructor(
    private readonly server: EmbeddedPostgres,
    readonly port: number,
  ) {}

  /** `stats`: with pg_stat_statements, for topStatements (BENCH_PG_STATS=1). */
  static async start(dir: string, opts: { stats?: boolean } = {}): Promise<TargetPostgres> {
    const port = await freeLoopbackPort();
    const server = new EmbeddedPostgres({
      dir,
      database: 'orders',
      durable: true,
      port,
      settings: opts.stats ? ['shared_preload_libraries=pg_stat_statements', 'pg_stat_statements.track=all'] : [],
    });
    const t = new TargetPostgres(server, port);
    t.superuserUrl = await server.start();
    t.su = new pg.Client({ connectionString: t.superuserUrl });
    t.su.on('error', () => undefined);
    await t.su.connect();
    await t.su.query(`CREATE ROLE ${t.admin} LOGIN CREATEROLE PASSWORD ${pg.escapeLiteral(t.adminPassword)}`);
    await t.su.query('CREATE TABLE orders (id int PRIMARY KEY, item text)');
    await t.su.query(`INSERT INTO orders VALUES (1, 'book')`);
    await t.su.query(`GRANT SELECT ON orders TO ${t.admin} WITH GRANT OPTION`);
    await t.su.query(`GRANT CONNECT ON DATABASE orders TO ${t.admin} WITH GRANT OPTION`);
    // A group role made by the admin (so it holds ADMIN OPTION on it) that may read orders: the
    // `role` variant grants membership in it instead of the table itself.
    const admin = await t.adminClient();
    try {
      await admin.query(`CREATE ROLE ${GROUP_ROLE} NOLOGIN`);
      await admin.query(`GRANT SELECT ON orders TO ${GROUP_ROLE}`);
    } finally {
      await admin.end();
    }
    return t;
  }

  /** The postmaster's PID (its backends are its children), from postmaster.pid. */
  get pid(): number {
    return Number(readFileSync(path.join(this.server.pgdata, 'postmaster.pid'), 'utf8').split('\n')[0]);
  }

  /** What `POST /projects/{p}/connections` takes (TLS off: loopback). */
  connectionRequest(name: string, rolePrefix: string) {
    return {
      name,
      host: this.host,
      port: this.port,
      database: this.database,
      username: this.admin,
      adminPassword: this.adminPassword,
      tlsMode: 'disable' as const,
      rolePrefix,
    };
  }

  /** Roles whose name starts with `prefix` (starts_with: `_` is a LIKE wildcard). */
  async roleCount(prefix: string): Promise<number> {
    const { rows } = await this.su!.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_roles WHERE starts_with(rolname, $1)', [
      prefix,
    ]);
    return rows[0]!.n;
  }

  /** Entries in the ACL of table `orders` (one per role granted on it). */
  async ordersAclEntries(): Promise<number> {
    const { rows } = await this.su!.query<{ n: number }>(
      `SELECT coalesce(array_length(relacl, 1), 0)::int AS n FROM pg_class WHERE oid = 'orders'::regclass`,
    );
    return rows[0]!.n;
  }

  /**
   * With `stats`: resets pg_stat_statements; the returned function gives the statements that
   * cost the target most since then, literals masked (a rendered CREATE ROLE holds a verifier).
   */
  async statementStats(): Promise<() => Promise<string>> {
    await this.su!.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    await this.su!.query('SELECT pg_stat_statements_reset()');
    return async () => {
      const { rows } = await this.su!.query<{ ms: number; calls: string; query: string }>(
        `SELECT round(sum(total_exec_time))::int AS ms, sum(calls)::text AS calls,
                regexp_replace(regexp_replace(query, '''[^'']*''', '''…''', 'g'), '"[^"]*"', '"…"', 'g') AS query
           FROM pg_stat_statements GROUP BY 3 ORDER BY 1 DESC LIMIT 12`,
      );
      return rows
        .map((r) => `${String(r.ms).padStart(7)} ms ${String(r.calls).padStart(7)} calls  ${r.query.replace(/\s+/g, ' ').slice(0, 170)}`)
        .join('\n');
    };
  }

  /** An admin session (SCRAM), as the engine opens one. */
  async adminClient(): Promise<pg.Client> {
    const c = new pg.Client({
      host: this.host,
      port: this.port,
      database: this.database,
      user: this.admin,
      password: this.adminPassword,
      application_name: 'bench-floor',
    });
    c.on('error', () => undefined);
    await c.connect();
    return c;
  }

  async stop(): Promise<void> {
    await this.su?.end().catch(() => undefined);
    await this.server.stop();
  }
}

/**
 * A SCRAM-SHA-256 verifier of `password` (RFC 5802/7677, 4096 rounds, 16-byte salt), computed as
 * the engine does (apps/control-plane/src/connections/engines/scram.ts, which the bench may not
 * import): the floors pay the same PBKDF2 per role.
 */
export async function scramVerifier(password: Buffer): Promise<string> {
  const salt = randomBytes(16);
  const salted = await promisify(pbkdf2)(password, salt, 4096, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$4096:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

export interface RoleFloor {
  name: string;
  what: string;
  ms: number;
  /** Statements retried after PostgreSQL's `XX000 tuple concurrently updated` (concurrent GRANTs on one table). */
  retries: number;
}

/**
 * What each floor role runs: CREATE ROLE alone, or with what the bench's creation statements add
 * (`table`: GRANT SELECT ON orders; `role`: GRANT orders_reader, membership in a group role).
 */
export type FloorShape = 'create' | 'table' | 'role';

/** The grant each variant's creation statements make, on `role` (quoted). */
export const grantStatement = (shape: 'table' | 'role', role: string): string =>
  shape === 'table' ? `GRANT SELECT ON orders TO ${role}` : `GRANT ${GROUP_ROLE} TO ${role}`;

/**
 * N roles created on the target by the admin role, `concurrency` at once, with nothing of Sigil in
 * between: a fresh password and its SCRAM verifier each, then `CREATE ROLE … LOGIN PASSWORD
 * '<verifier>' VALID UNTIL …` (and the variant's grant in the same transaction, retried on XX000
 * as the issuer does). `perRole`: a new SCRAM login per role, as
 * the engine's client-per-call does (decision 019); otherwise `concurrency` sessions opened
 * beforehand. The roles are named `prefix` + a counter; dropRolesFloor removes them.
 */
export async function createRolesFloor(
  target: TargetPostgres,
  opts: { n: number; concurrency: number; prefix: string; shape: FloorShape; perRole: boolean },
): Promise<RoleFloor> {
  const expires = pg.escapeLiteral(new Date(Date.now() + 3_600_000).toISOString());
  const sessions = opts.perRole ? [] : await Promise.all(Array.from({ length: opts.concurrency }, () => target.adminClient()));
  let next = 0;
  let retries = 0;
  const started = now();
  try {
    await Promise.all(
      Array.from({ length: opts.concurrency }, async (_, w) => {
        while (next < opts.n) {
          const role = pg.escapeIdentifier(`${opts.prefix}${String(next++).padStart(6, '0')}`);
          const verifier = pg.escapeLiteral(await scramVerifier(randomBytes(30)));
          const c = opts.perRole ? await target.adminClient() : sessions[w]!;
          try {
            for (let attempt = 1; ; attempt++) {
              try {
                await c.query('BEGIN');
                await c.query(`CREATE ROLE ${role} LOGIN PASSWORD ${verifier} VALID UNTIL ${expires}`);
                if (opts.shape !== 'create') await c.query(grantStatement(opts.shape, role));
                await c.query('COMMIT');
                break;
              } catch (err) {
                await c.query('ROLLBACK').catch(() => undefined);
                // The issuer gives up after 5 (then the lease fails and waits its backoff); a floor must finish.
                if ((err as { code?: string }).code !== 'XX000' || attempt >= 50) throw err;
                retries++;
                await new Promise((r) => setTimeout(r, 20 + Math.random() * 40 * Math.min(attempt, 5)));
              }
            }
          } finally {
            if (opts.perRole) await c.end().catch(() => undefined);
          }
        }
      }),
    );
  } finally {
    await Promise.all(sessions.map((s) => s.end().catch(() => undefined)));
  }
  const ms = now() - started;
  const shape =
    opts.shape === 'create'
      ? 'CREATE ROLE … LOGIN PASSWORD <SCRAM verifier> VALID UNTIL'
      : `CREATE ROLE …, ${grantStatement(opts.shape, '…')}`;
  return {
    name: `${opts.shape === 'create' ? 'CREATE ROLE' : 'CREATE ROLE + GRANT'}${opts.perRole ? ', a login per role' : ''}`,
    what: `${opts.n} roles by the CREATEROLE admin, ${opts.concurrency} at once: verifier computed, ${shape} in one transaction, ${opts.perRole ? 'a new SCRAM session per role (the engine’s client per call)' : `on ${opts.concurrency} sessions opened beforehand`}`,
    ms,
    retries,
  };
}

/** Drops every role starting with `prefix` (REVOKE of the grant first), `concurrency` at once on open sessions. */
export async function dropRolesFloor(target: TargetPostgres, prefix: string, concurrency: number): Promise<RoleFloor> {
  const admin = await target.adminClient();
  const roles = (
    await admin.query<{ r: string }>('SELECT rolname AS r FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY 1', [prefix])
  ).rows.map((r) => r.r);
  await admin.end();
  const sessions = await Promise.all(Array.from({ length: concurrency }, () => target.adminClient()));
  let next = 0;
  let retries = 0;
  const started = now();
  try {
    await Promise.all(
      sessions.map(async (c) => {
        while (next < roles.length) {
          const role = pg.escapeIdentifier(roles[next++]!);
          for (let attempt = 1; ; attempt++) {
            try {
              // What the default revocation does once the sessions are gone: the grant goes with DROP OWNED.
              await c.query('BEGIN');
              await c.query(`GRANT ${role} TO CURRENT_USER WITH INHERIT TRUE, SET FALSE`);
              await c.query(`REASSIGN OWNED BY ${role} TO CURRENT_USER`);
              await c.query(`DROP OWNED BY ${role}`);
              await c.query(`DROP ROLE IF EXISTS ${role}`);
              await c.query('COMMIT');
              break;
            } catch (err) {
              await c.query('ROLLBACK').catch(() => undefined);
              if ((err as { code?: string }).code !== 'XX000' || attempt >= 50) throw err;
              retries++;
              await new Promise((r) => setTimeout(r, 20 + Math.random() * 40 * attempt));
            }
          }
        }
      }),
    );
  } finally {
    await Promise.all(sessions.map((s) => s.end().catch(() => undefined)));
  }
  return {
    name: 'DROP ROLE',
    what: `${roles.length} roles, ${concurrency} at once on sessions opened beforehand: GRANT role TO CURRENT_USER, REASSIGN OWNED, DROP OWNED, DROP ROLE in one transaction`,
    ms: now() - started,
    retries,
  };
}
