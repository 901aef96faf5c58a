import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { testEnv, uniqueName } from './test-env.js';

/**
 * A target database for dynamic secrets in the test PostgreSQL instance: a database of its own
 * (never Sigil's schema) with a table `orders`, and an admin role with CREATEROLE only (what
 * docs/dynamic-secrets.md tells operators to give Sigil). Roles are instance-wide, so the role
 * prefix carries this run's random tag.
 */
export class TargetDatabase {
  readonly tag = randomBytes(4).toString('hex');
  readonly prefix = `sigil_${this.tag}_`;
  readonly admin = `sigil_admin_${this.tag}`;
  readonly database = uniqueName('target').replace(/-/g, '_');
  readonly host: string;
  readonly port: number;
  readonly adminPassword = randomBytes(18).toString('base64url');

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

  /**
   * What `POST /projects/{p}/connections` takes to reach it (TLS off: the test server has none).
   * A second connection to the same server needs its own `via` (a TcpProxy's port) and `suffix`:
   * prefixes must not overlap, and roles made through it are still this run's (`drop`).
   */
  connectionRequest(name: string, via?: { port: number; suffix: string }) {
    return {
      name,
      host: via ? '127.0.0.1' : this.host,
      port: via?.port ?? this.port,
      database: this.database,
      username: this.admin,
      adminPassword: this.adminPassword,
      tlsMode: 'disable' as const,
      rolePrefix: via ? `sigil_${this.tag}${via.suffix}_` : this.prefix,
    };
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

  /** Sigil's roles in the instance (this run's prefix; `prefix` for a second connection's). */
  roles(prefix = this.prefix): Promise<string[]> {
    return this.superuser('postgres', async (c) =>
      (await c.query<{ r: string }>(`SELECT rolname AS r FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY 1`, [prefix])).rows.map(
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
      // Every connection's roles of this run (their prefixes all start so), not the admin's.
      for (const r of await this.roles(`sigil_${this.tag}`))
        if (r !== this.admin) await c.query(`DROP ROLE IF EXISTS ${c.escapeIdentifier(r)}`);
      await c.query(`DROP ROLE IF EXISTS ${this.admin}`);
    });
  }
}
