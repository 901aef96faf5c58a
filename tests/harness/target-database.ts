import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import type { ConnectionTarget, CredentialEngine } from '../../apps/control-plane/src/connections/engines/credential-engine.js';
import { PostgresCredentialEngine } from '../../apps/control-plane/src/connections/engines/postgresql.engine.js';
import type { ConnectionRef, CredentialTargets } from '../../apps/control-plane/src/leases/credential-targets.js';
import { testEnv, uniqueName } from './test-env.js';

/**
 * A target database for dynamic secrets in the test PostgreSQL instance — a database of its own
 * (never Sigil's schema) with a table `orders`, and an admin role with CREATEROLE only — and a
 * CredentialTargets that reaches it through the real PostgreSQL engine. `down` points the
 * connection at a closed port (the database "is down" for Sigil).
 */
export class TargetDatabase implements CredentialTargets {
  readonly tag = randomBytes(4).toString('hex');
  readonly prefix = `sigil_${this.tag}_`;
  readonly admin = `sigil_admin_${this.tag}`;
  readonly database = uniqueName('target').replace(/-/g, '_');
  readonly host: string;
  readonly port: number;
  down = false;
  private readonly adminPassword = randomBytes(18).toString('base64url');
  private readonly engine: CredentialEngine = new PostgresCredentialEngine({ connectTimeoutMs: 2_000, statementTimeoutMs: 10_000 });
  private readonly refs = new Map<string, ConnectionRef>();

  constructor() {
    const server = new URL(testEnv().postgres.adminUrl);
    this.host = server.hostname;
    this.port = Number(server.port);
  }

  static async create(): Promise<TargetDatabase> {
    const t = new TargetDatabase();
    await t.superuser('postgres', async (c) => {
      await c.query(`CREATE DATABASE ${t.database}`);
      await c.query(`CREATE ROLE ${t.admin} LOGIN CREATEROLE PASSWORD ${pg.escapeLiteral(t.adminPassword)}`);
    });
    await t.superuser(t.database, async (c) => {
      await c.query('CREATE TABLE orders (id int PRIMARY KEY, item text)');
      await c.query(`INSERT INTO orders VALUES (1, 'book')`);
      await c.query(`GRANT SELECT, INSERT ON orders TO ${t.admin} WITH GRANT OPTION`);
      await c.query(`GRANT CONNECT ON DATABASE ${t.database} TO ${t.admin} WITH GRANT OPTION`);
    });
    return t;
  }

  /** Registers connection `name` of `projectId`. */
  connection(projectId: string, name: string): ConnectionRef {
    const ref: ConnectionRef = { id: randomUUID(), projectId, name, engine: 'postgresql', rolePrefix: this.prefix };
    this.refs.set(ref.id, ref);
    return ref;
  }

  async superuser<T>(db: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const u = new URL(testEnv().postgres.adminUrl);
    u.pathname = `/${db}`;
    const c = new pg.Client({ connectionString: u.toString() });
    c.on('error', () => undefined);
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.end();
    }
  }

  /** Sigil's roles in the instance (this run's prefix). */
  roles(): Promise<string[]> {
    return this.superuser('postgres', async (c) =>
      (await c.query<{ r: string }>(`SELECT rolname AS r FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY 1`, [this.prefix])).rows.map(
        (r) => r.r,
      ),
    );
  }

  /** Logs in as `user` and runs `sql`; rejects when the login or the statement is refused. */
  async as(user: string, password: string, sql: string): Promise<pg.QueryResult> {
    const c = new pg.Client({ host: this.host, port: this.port, database: this.database, user, password, connectionTimeoutMillis: 3_000 });
    c.on('error', () => undefined);
    await c.connect();
    try {
      return await c.query(sql);
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  /** Runs `sql` as the admin role Sigil connects as (what an issuer that died would have left). */
  asAdmin(sql: string): Promise<pg.QueryResult> {
    return this.as(this.admin, this.adminPassword, sql);
  }

  async drop(): Promise<void> {
    await this.superuser('postgres', async (c) => {
      await c.query(`DROP DATABASE IF EXISTS ${this.database} WITH (FORCE)`);
      for (const r of await this.roles()) await c.query(`DROP ROLE IF EXISTS ${c.escapeIdentifier(r)}`);
      await c.query(`DROP ROLE IF EXISTS ${this.admin}`);
    });
  }

  private targetOf(ref: ConnectionRef): ConnectionTarget {
    return {
      id: ref.id,
      host: this.host,
      // A port nothing listens on: connect is refused at once.
      port: this.down ? 1 : this.port,
      database: this.database,
      username: this.admin,
      tlsMode: 'disable',
      rolePrefix: ref.rolePrefix,
      adminPassword: Buffer.from(this.adminPassword),
    };
  }

  describe(_tx: unknown, projectId: string, name: string): Promise<ConnectionRef | null> {
    return Promise.resolve([...this.refs.values()].find((r) => r.projectId === projectId && r.name === name) ?? null);
  }
  async target(tx: unknown, projectId: string, name: string): Promise<ConnectionTarget> {
    const ref = await this.describe(tx, projectId, name);
    if (!ref) throw new Error('no such connection');
    return this.targetOf(ref);
  }
  targetById(_tx: unknown, _projectId: string, id: string): Promise<ConnectionTarget> {
    const ref = this.refs.get(id);
    return ref ? Promise.resolve(this.targetOf(ref)) : Promise.reject(new Error('no such connection'));
  }
  engineFor(): CredentialEngine {
    return this.engine;
  }
  all(): Promise<ConnectionRef[]> {
    return Promise.resolve([...this.refs.values()]);
  }
}
