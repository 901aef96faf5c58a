import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import pg from 'pg';
import {
  CredentialEngineError,
  type ConnectionTarget,
  type CreateRoleRequest,
  type CredentialEngine,
  type EngineServerInfo,
  type EngineSession,
  type RevokeRoleRequest,
} from './credential-engine.js';
import { OPEN_DIAL_POLICY, type DialPolicy } from './dial-policy.js';
import { scramPasswordProblem, scramVerifier } from './scram.js';
import {
  CREATION_PLACEHOLDERS,
  REVOCATION_PLACEHOLDERS,
  renderStatement,
  statementFormsProblem,
  statementsProblem,
  TemplateError,
} from './statement-template.js';

/**
 * The PostgreSQL credential engine (docs/dynamic-secrets.md, decision 019). One Client per call,
 * no pool: a pool would have to keep the admin password in memory to reconnect, while a call
 * opens it, uses it for one handshake and lets the caller zero it; the calls are few per target
 * (one per credential issued or revoked), so a handshake each is cheap next to the HSM's work.
 */

export interface PostgresEngineOptions {
  /** TCP connect + TLS + authentication. */
  connectTimeoutMs: number;
  /** Server-side statement_timeout and lock_timeout, and the client-side query timeout behind them. */
  statementTimeoutMs: number;
  /** How long revokeRole waits for each of the role's sessions to end once told to. */
  terminateWaitMs: number;
}

export const DEFAULT_POSTGRES_ENGINE_OPTIONS: PostgresEngineOptions = {
  connectTimeoutMs: 10_000,
  statementTimeoutMs: 30_000,
  terminateWaitMs: 5_000,
};

/** Roles Sigil creates: lowercase so they never need case-folding care; 63 bytes is PostgreSQL's NAMEDATALEN - 1 (longer names are silently truncated). */
const ROLE_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** The default revocation, run after the role's sessions are ended (revokeRole). */
export const DEFAULT_REVOCATION = [
  // Objects the role made (a table it created) go to the admin, then its grants in this database go.
  'REASSIGN OWNED BY {{name}} TO CURRENT_USER',
  'DROP OWNED BY {{name}}',
  'DROP ROLE IF EXISTS {{name}}',
];

/** SQLSTATEs named in errors (the server's message can quote a statement, so it is never passed on). */
const CONDITIONS: Record<string, string> = {
  '42601': 'syntax_error',
  '42501': 'insufficient_privilege',
  '42P01': 'undefined_table',
  '42704': 'undefined_object',
  '42710': 'duplicate_object',
  '3F000': 'invalid_schema_name',
  '3D000': 'invalid_catalog_name',
  '2BP01': 'dependent_objects_still_exist',
  '0LP01': 'invalid_grant_operation',
  '57014': 'query_canceled',
  '55P03': 'lock_not_available',
  '40P01': 'deadlock_detected',
  '40001': 'serialization_failure',
  '28P01': 'invalid_password',
  '28000': 'invalid_authorization_specification',
  '53300': 'too_many_connections',
  '57P03': 'cannot_connect_now',
};

interface PgError {
  code?: string;
  message?: string;
  position?: string;
}

export class PostgresCredentialEngine implements CredentialEngine {
  readonly engine = 'postgresql' as const;
  private readonly options: PostgresEngineOptions;

  /** `dial`: where connections may point (the control plane passes its NetworkDialPolicy). */
  constructor(
    options: Partial<PostgresEngineOptions> = {},
    private readonly dial: DialPolicy = OPEN_DIAL_POLICY,
  ) {
    this.options = { ...DEFAULT_POSTGRES_ENGINE_OPTIONS, ...options };
  }

  async verify(target: ConnectionTarget): Promise<EngineServerInfo> {
    return this.withClient(target, async (c) => {
      const { rows } = await query<{ version: string; rolsuper: boolean; rolcreaterole: boolean }>(
        c,
        `SELECT current_setting('server_version') AS version, r.rolsuper, r.rolcreaterole
           FROM pg_roles r WHERE r.rolname = current_user`,
        [],
        'reading the server version',
      );
      const row = rows[0];
      // What issuance needs: CREATEROLE without SUPERUSER (createRole refuses a superuser admin).
      return {
        serverVersion: row?.version ?? 'unknown',
        canCreateRoles: row !== undefined && row.rolcreaterole && !row.rolsuper,
        superuser: row?.rolsuper ?? false,
      };
    });
  }

  /**
   * Runs the creation statements, then `VALID UNTIL` the lease's expiry, in one transaction that
   * commits only if what came out is one new role of that name with no power over the server:
   * not a superuser, not CREATEROLE/CREATEDB/REPLICATION/BYPASSRLS, and not a member of a role
   * that is, of the admin role, or of the server-file and signal roles (docs/dynamic-secrets.md,
   * "What statements may do"). A superuser admin is refused outright: its statements could do anything.
   */
  async createRole(target: ConnectionTarget, r: CreateRoleRequest): Promise<void> {
    const rendered = await this.renderCreation(target, r);
    await this.withClient(target, (c) => this.createRoleOn(c, target, r.role, rendered));
  }

  /** Checks and renders the creation statements (before any connection is made). */
  private async renderCreation(
    target: ConnectionTarget,
    r: CreateRoleRequest,
  ): Promise<{ sql: string[]; name: string; expiration: string }> {
    checkRole(target, r.role);
    const problem =
      statementsProblem(r.statements, CREATION_PLACEHOLDERS) ??
      (r.statements.length === 0 ? 'no statements' : statementFormsProblem(r.statements, 'creation'));
    if (problem) throw new CredentialEngineError('statement_failed', `creation statements: ${problem}`);
    const passwordProblem = scramPasswordProblem(r.password);
    if (passwordProblem) throw new CredentialEngineError('statement_failed', passwordProblem);
    const values = {
      name: pg.escapeIdentifier(r.role),
      password: pg.escapeLiteral(await scramVerifier(r.password)),
      expiration: pg.escapeLiteral(r.expiresAt.toISOString()),
    };
    return { sql: r.statements.map((s) => renderStatement(s, values)), name: values.name, expiration: values.expiration };
  }

  /** One creation on an open client (createRole, or a session's). */
  private async createRoleOn(c: pg.Client, target: ConnectionTarget, role: string, r: { sql: string[]; name: string; expiration: string }) {
    await refuseSuperuserAdmin(c, target);
    await query(c, 'BEGIN', [], 'starting the transaction');
    try {
      for (const [i, sql] of r.sql.entries()) await query(c, sql, [], `creation statement ${i + 1} of ${r.sql.length}`);
      await checkCreatedRole(c, role);
      // Whatever the statements said: the database refuses the login after the lease's expiry,
      // even if every revocation fails.
      await query(c, `ALTER ROLE ${r.name} VALID UNTIL ${r.expiration}`, [], 'setting the role expiry (VALID UNTIL)');
      await query(c, 'COMMIT', [], 'committing the creation statements');
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  }

  /**
   * Idempotent: a role that does not exist is success. Its logins stop first (NOLOGIN), then its
   * open sessions are ended, in every database of the server, then the revocation statements
   * (or DEFAULT_REVOCATION) run in one transaction. When the sessions cannot be ended (the admin
   * lacks the privileges of the role and cannot grant them to itself, see docs/dynamic-secrets.md),
   * the role is still revoked and the call then fails with `statement_failed` saying so, because
   * the sessions already open keep working until they disconnect.
   */
  async revokeRole(target: ConnectionTarget, r: RevokeRoleRequest): Promise<void> {
    const rendered = renderRevocation(target, r);
    await this.withClient(target, (c) => this.revokeRoleOn(c, r.role, rendered));
  }

  /**
   * One login for many calls (decision 019, addendum): createRole and revokeRole on one client,
   * with the same checks, until `fn` ends. The admin password is needed only for the login, as
   * with one call. A call that fails leaves the session usable when the database is (a failed
   * transaction is rolled back); the caller opens a new one when the connection itself broke.
   */
  async session<T>(target: ConnectionTarget, fn: (s: EngineSession) => Promise<T>): Promise<T> {
    return this.withClient(target, (c) =>
      fn({
        createRole: async (r) => this.createRoleOn(c, target, r.role, await this.renderCreation(target, r)),
        revokeRole: (r) => this.revokeRoleOn(c, r.role, renderRevocation(target, r)),
      }),
    );
  }

  /** One revocation on an open client (revokeRole, or a session's). */
  private async revokeRoleOn(c: pg.Client, roleName: string, rendered: { sql: string[]; name: string }): Promise<void> {
    const name = rendered.name;
    const role = (
      await query<{ oid: string; privileged: boolean }>(
        c,
        // The role's own privileges: pg_signal_backend alone cannot end a session of a role
        // the admin is not a member of when that role is itself privileged, nor reassign its objects.
        `SELECT oid::text AS oid, pg_has_role(current_user, oid, 'USAGE') AS privileged
           FROM pg_roles WHERE rolname = $1`,
        [roleName],
        'looking the role up',
      )
    ).rows[0];
    if (role === undefined) return;
    // PostgreSQL 16+ gives the CREATEROLE role that made a role ADMIN OPTION on it, without its
    // privileges; ending its sessions, REASSIGN OWNED and DROP OWNED need them, so the admin
    // grants the role to itself (it holds ADMIN OPTION). The grant goes with the role.
    if (!role.privileged)
      await c
        .query(`GRANT ${name} TO CURRENT_USER WITH INHERIT TRUE, SET FALSE`)
        .catch(() => c.query(`GRANT ${name} TO CURRENT_USER`)) // before PostgreSQL 16: no WITH options
        .catch(() => undefined); // not ours to grant: the sessions may then not end, which is reported below
    await query(c, `ALTER ROLE ${name} NOLOGIN`, [], 'refusing new logins of the role');
    const unterminated = await this.terminateSessions(c, role.oid);
    await query(c, 'BEGIN', [], 'starting the transaction');
    try {
      for (const [i, sql] of rendered.sql.entries()) await query(c, sql, [], `revocation statement ${i + 1} of ${rendered.sql.length}`);
      // Custom statements must still leave the role unable to log in (gone, or NOLOGIN).
      const left = await query<{ rolcanlogin: boolean }>(
        c,
        'SELECT rolcanlogin FROM pg_roles WHERE rolname = $1',
        [roleName],
        'checking the role is revoked',
      );
      if (left.rows[0]?.rolcanlogin)
        throw new CredentialEngineError('statement_failed', `the revocation statements left role ${roleName} able to log in`);
      await query(c, 'COMMIT', [], 'committing the revocation statements');
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
    if (unterminated > 0)
      throw new CredentialEngineError(
        'statement_failed',
        `role ${roleName} is revoked, but ${unterminated} of its open sessions could not be ended: the admin role needs the role's privileges or pg_signal_backend (docs/dynamic-secrets.md)`,
        '42501',
      );
  }

  /** Ends every session of the role, waiting for each; how many could not be ended for lack of privilege. */
  private async terminateSessions(c: pg.Client, oid: string): Promise<number> {
    const { rows } = await query<{ pid: number }>(
      c,
      'SELECT pid FROM pg_stat_activity WHERE usesysid = $1::oid AND pid <> pg_backend_pid()',
      [oid],
      'listing the role sessions',
    );
    let refused = 0;
    for (const { pid } of rows) {
      try {
        // false: it did not end within the wait (it will when its current statement yields); a
        // pid that is already gone is false with a warning, which is fine.
        await c.query('SELECT pg_terminate_backend($1, $2)', [pid, this.options.terminateWaitMs]);
      } catch (err) {
        if ((err as PgError).code === '42501') refused++;
        else throw engineError(err, 'ending a session of the role');
      }
    }
    return refused;
  }

  async listRoles(target: ConnectionTarget): Promise<string[]> {
    return this.withClient(target, async (c) => {
      // starts_with, not LIKE: `_` in every prefix is a LIKE wildcard.
      const { rows } = await query<{ rolname: string }>(
        c,
        'SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY rolname',
        [target.rolePrefix],
        'listing roles',
      );
      return rows.map((r) => r.rolname);
    });
  }

  private async withClient<T>(target: ConnectionTarget, fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const o = this.options;
    // The checked address, not the name: a second lookup could answer differently (dial-policy.ts).
    const address = await this.dial.addressFor(target.host, target.port, target);
    const client = new pg.Client({
      host: address,
      port: target.port,
      database: target.database,
      user: target.username,
      // pg needs a string; it lives until the handshake is done (decision 019 on what cannot be zeroed).
      password: target.adminPassword.toString('utf8'),
      ssl: sslOptions(target),
      // Over TLS, SCRAM-SHA-256-PLUS when the server offers it: the exchange is bound to the TLS
      // session, so a man in the middle of a `require` connection cannot relay the login.
      enableChannelBinding: target.tlsMode !== 'disable',
      connectionTimeoutMillis: o.connectTimeoutMs,
      statement_timeout: o.statementTimeoutMs,
      lock_timeout: o.statementTimeoutMs,
      query_timeout: o.statementTimeoutMs + 5_000,
      idle_in_transaction_session_timeout: o.statementTimeoutMs,
      application_name: 'sigil',
      keepAlive: true,
    });
    // A connection lost while idle is emitted, not thrown; unhandled it would end the process.
    client.on('error', () => undefined);
    const scramCompleted = requireScram(client, target);
    try {
      await client.connect();
      if (!scramCompleted())
        throw new CredentialEngineError(
          'auth_failed',
          `${target.host}:${target.port} let ${target.username} in without checking a password (trust, peer or cert in pg_hba.conf); Sigil requires SCRAM-SHA-256 for its admin role`,
        );
    } catch (err) {
      await client.end().catch(() => undefined);
      throw connectError(err, target);
    }
    try {
      return await fn(client);
    } catch (err) {
      throw err instanceof CredentialEngineError ? err : engineError(err, 'talking to the database');
    } finally {
      await client.end().catch(() => undefined);
    }
  }
}

/**
 * pg answers a server that asks for the password in clear text (or as MD5 of it) with the
 * password: a host an operator pointed the connection at, or a man in the middle of a `require`
 * connection, would simply ask. Sigil answers SCRAM-SHA-256 only, whose exchange proves the
 * password without sending it (and, over TLS, is bound to the session). pg binds its handlers when
 * it connects, so replacing them on the instance before connect() is what refuses; the engine's
 * unit test holds a fake server to it (pg is pinned in the lockfile).
 *
 * A server that lets the admin in with no password at all (`trust`, `peer`, `cert`) is refused
 * too: then whoever registers the connection needs to know nothing, and a `trust` line meant for
 * the control plane's own network would hand its admin role to any project. Returns whether a
 * SCRAM exchange completed, with the server's proof checked (pg checks it in SASLFinal).
 */
function requireScram(client: pg.Client, target: ConnectionTarget): () => boolean {
  const handlers = client as unknown as Record<
    '_handleAuthCleartextPassword' | '_handleAuthMD5Password' | '_handleAuthSASLFinal',
    (msg?: unknown) => void
  >;
  const refuse = (how: string) => () =>
    client.connection.emit(
      'error',
      new CredentialEngineError(
        'auth_failed',
        `${target.host}:${target.port} asked for the admin password ${how}; Sigil authenticates with SCRAM-SHA-256 only (set password_encryption = scram-sha-256 and a scram-sha-256 line in pg_hba.conf)`,
      ),
    );
  handlers._handleAuthCleartextPassword = refuse('in clear text');
  handlers._handleAuthMD5Password = refuse('as MD5');
  let proven = false;
  const finalize = handlers._handleAuthSASLFinal.bind(client);
  handlers._handleAuthSASLFinal = (msg) => {
    finalize(msg);
    // pg reports a bad server signature as a connection error; reaching here without one is proof.
    proven = (client as unknown as { saslSession: unknown }).saslSession === null;
  };
  return () => proven;
}

/**
 * TLS modes (docs/dynamic-secrets.md): `verify-full` checks the chain (against the connection's
 * CA, or the system's roots without one) and the host name; `require` encrypts but verifies
 * nothing, so it stops eavesdropping, not an active man in the middle; `disable` is plaintext.
 */
export function sslOptions(target: Pick<ConnectionTarget, 'tlsMode' | 'caCertificate'> & { host?: string }): false | ConnectionOptions {
  // The engine dials the resolved address; the name it was given is what the certificate is
  // checked against (tls.connect uses servername for that) and what SNI names.
  const servername = target.host !== undefined && isIP(target.host) === 0 ? { servername: target.host } : {};
  switch (target.tlsMode) {
    case 'disable':
      return false;
    case 'require':
      return { rejectUnauthorized: false, ...servername };
    case 'verify-full':
      return {
        rejectUnauthorized: true,
        ...(target.caCertificate ? { ca: target.caCertificate } : {}),
        minVersion: 'TLSv1.2',
        ...servername,
      };
  }
}

/** Checks and renders a revocation (before any connection is made). */
function renderRevocation(target: ConnectionTarget, r: RevokeRoleRequest): { sql: string[]; name: string } {
  checkRole(target, r.role);
  const statements = r.statements.length > 0 ? r.statements : DEFAULT_REVOCATION;
  const problem = statementsProblem(statements, REVOCATION_PLACEHOLDERS) ?? statementFormsProblem(statements, 'revocation');
  if (problem) throw new CredentialEngineError('statement_failed', `revocation statements: ${problem}`);
  const name = pg.escapeIdentifier(r.role);
  return { sql: statements.map((s) => renderStatement(s, { name })), name };
}

function checkRole(target: ConnectionTarget, role: string): void {
  if (!ROLE_NAME.test(role) || Buffer.byteLength(role) > 63)
    throw new CredentialEngineError('statement_failed', 'role names are 1-63 characters of a-z, 0-9 and _, not starting with a digit');
  if (!role.startsWith(target.rolePrefix))
    throw new CredentialEngineError(
      'statement_failed',
      `role ${role} does not start with the connection's role prefix ${target.rolePrefix}`,
    );
}

/** Runs one statement; a failure names `what` and the SQLSTATE, never the statement or the server's message. */
async function query<R extends pg.QueryResultRow>(c: pg.Client, sql: string, params: unknown[], what: string): Promise<pg.QueryResult<R>> {
  try {
    // The extended protocol: one statement per message, so a `;` cannot smuggle in a second.
    // (pg has queryMode since 8.12; its types do not list it yet.)
    const extended: pg.QueryConfig & { queryMode: 'extended' } = { text: sql, values: params, queryMode: 'extended' };
    return await c.query<R>(extended);
  } catch (err) {
    throw engineError(err, what);
  }
}

async function refuseSuperuserAdmin(c: pg.Client, target: ConnectionTarget): Promise<void> {
  const { rows } = await query<{ rolsuper: boolean }>(
    c,
    'SELECT rolsuper FROM pg_roles WHERE rolname = current_user',
    [],
    'reading the admin role',
  );
  if (rows[0]?.rolsuper !== false)
    throw new CredentialEngineError(
      'statement_failed',
      `the admin role ${target.username} is a superuser; Sigil issues credentials only as a role with CREATEROLE and the grants it hands out (docs/dynamic-secrets.md)`,
    );
}

/** Roles a workload role must not be a member of: each gives power over the server or over Sigil's admin. */
const FORBIDDEN_MEMBERSHIPS = ['pg_execute_server_program', 'pg_read_server_files', 'pg_write_server_files', 'pg_signal_backend'];

/**
 * After the creation statements, inside their transaction: the role exists, and is harmless. (No
 * other role can have been made: every CREATE form names {{name}}. Counting pg_roles would not
 * tell, since other sessions' roles commit meanwhile.)
 */
async function checkCreatedRole(c: pg.Client, role: string): Promise<void> {
  const { rows } = await query<{ powers: boolean; member_of_power: boolean }>(
    c,
    `SELECT r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls AS powers,
            EXISTS (SELECT 1 FROM pg_roles m
                     WHERE m.oid <> r.oid AND pg_has_role(r.oid, m.oid, 'MEMBER')
                       AND (m.rolsuper OR m.rolcreaterole OR m.rolcreatedb OR m.rolreplication OR m.rolbypassrls
                            OR m.rolname = current_user OR m.rolname = ANY($2::text[]))) AS member_of_power
       FROM pg_roles r WHERE r.rolname = $1`,
    [role, FORBIDDEN_MEMBERSHIPS],
    'checking the created role',
  );
  const row = rows[0];
  const why =
    row === undefined
      ? `did not create role ${role}`
      : row.powers
        ? `gave role ${role} a server privilege (SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS)`
        : row.member_of_power
          ? `made role ${role} a member of the admin role, a privileged role or ${FORBIDDEN_MEMBERSHIPS.join('/')}`
          : undefined;
  if (why) throw new CredentialEngineError('statement_failed', `the creation statements ${why}; nothing was created`);
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'ECONNRESET',
  'EPIPE',
]);

/** A statement's failure (the connection is up). */
function engineError(err: unknown, what: string): CredentialEngineError {
  if (err instanceof CredentialEngineError) return err;
  if (err instanceof TemplateError) return new CredentialEngineError('statement_failed', err.message);
  const e = err as PgError;
  if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) {
    const condition = CONDITIONS[e.code];
    const at = e.position && /^\d+$/.test(e.position) ? ` at character ${e.position}` : '';
    return new CredentialEngineError(
      'statement_failed',
      `${what} failed: SQLSTATE ${e.code}${condition ? ` (${condition})` : ''}${at}`,
      e.code,
    );
  }
  if ((typeof e.code === 'string' && NETWORK_CODES.has(e.code)) || /timeout|terminated|Connection/i.test(e.message ?? ''))
    return new CredentialEngineError('unreachable', `${what} failed: the connection to the database was lost or timed out`);
  return new CredentialEngineError('statement_failed', `${what} failed`);
}

/** A failure to connect: the network, TLS, or authentication. */
function connectError(err: unknown, target: ConnectionTarget): CredentialEngineError {
  if (err instanceof CredentialEngineError) return err;
  const e = err as PgError & { library?: string; reason?: string };
  const where = `${target.host}:${target.port}`;
  const code = typeof e.code === 'string' ? e.code : '';
  if (code === '28P01' || code === '28000')
    return new CredentialEngineError(
      'auth_failed',
      `${where} refused the admin credential of ${target.username} (SQLSTATE ${code}: ${CONDITIONS[code]})`,
      code,
    );
  if (code === '3D000') return new CredentialEngineError('unreachable', `${where} has no database ${target.database}`, code);
  if (/^[0-9A-Z]{5}$/.test(code))
    return new CredentialEngineError('unreachable', `${where} refused the connection (SQLSTATE ${code})`, code);
  const message = e.message ?? '';
  if (
    code.startsWith('ERR_TLS_') ||
    code.startsWith('ERR_SSL_') ||
    /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|HOSTNAME/.test(code) ||
    e.library !== undefined ||
    /SSL|TLS|certificate/i.test(message)
  ) {
    const why =
      message === 'The server does not support SSL connections' ? 'the server does not offer TLS' : code ? code : 'the handshake failed';
    return new CredentialEngineError('tls_failed', `TLS to ${where} failed in mode ${target.tlsMode}: ${why}`);
  }
  if (NETWORK_CODES.has(code)) return new CredentialEngineError('unreachable', `cannot reach ${where} (${code})`);
  if (/timeout/i.test(message))
    return new CredentialEngineError('unreachable', `cannot reach ${where} (no answer within the connect timeout)`);
  return new CredentialEngineError('unreachable', `cannot connect to ${where}${code ? ` (${code})` : ''}`);
}
