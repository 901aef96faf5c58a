import type { ConnectionOptions } from 'node:tls';
import pg from 'pg';
import {
  CredentialEngineError,
  type ConnectionTarget,
  type CreateRoleRequest,
  type CredentialEngine,
  type EngineServerInfo,
  type RevokeRoleRequest,
} from './credential-engine.js';
import { scramPasswordProblem, scramVerifier } from './scram.js';
import { CREATION_PLACEHOLDERS, REVOCATION_PLACEHOLDERS, renderStatement, statementsProblem, TemplateError } from './statement-template.js';

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

  constructor(options: Partial<PostgresEngineOptions> = {}) {
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
      return { serverVersion: row?.version ?? 'unknown', canCreateRoles: row !== undefined && (row.rolsuper || row.rolcreaterole) };
    });
  }

  async createRole(target: ConnectionTarget, r: CreateRoleRequest): Promise<void> {
    checkRole(target, r.role);
    const problem = statementsProblem(r.statements, CREATION_PLACEHOLDERS) ?? (r.statements.length === 0 ? 'no statements' : undefined);
    if (problem) throw new CredentialEngineError('statement_failed', `creation statements: ${problem}`);
    const passwordProblem = scramPasswordProblem(r.password);
    if (passwordProblem) throw new CredentialEngineError('statement_failed', passwordProblem);
    const values = {
      name: pg.escapeIdentifier(r.role),
      password: pg.escapeLiteral(scramVerifier(r.password)),
      expiration: pg.escapeLiteral(r.expiresAt.toISOString()),
    };
    const rendered = r.statements.map((s) => renderStatement(s, values));
    await this.withClient(target, async (c) => {
      await query(c, 'BEGIN', [], 'starting the transaction');
      try {
        for (const [i, sql] of rendered.entries()) await query(c, sql, [], `creation statement ${i + 1} of ${rendered.length}`);
        await query(c, 'COMMIT', [], 'committing the creation statements');
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    });
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
    checkRole(target, r.role);
    const statements = r.statements.length > 0 ? r.statements : DEFAULT_REVOCATION;
    const problem = statementsProblem(statements, REVOCATION_PLACEHOLDERS);
    if (problem) throw new CredentialEngineError('statement_failed', `revocation statements: ${problem}`);
    const name = pg.escapeIdentifier(r.role);
    const rendered = statements.map((s) => renderStatement(s, { name }));
    await this.withClient(target, async (c) => {
      const role = (
        await query<{ oid: string; privileged: boolean }>(
          c,
          `SELECT oid::text AS oid, pg_has_role(current_user, oid, 'USAGE') OR pg_has_role(current_user, 'pg_signal_backend', 'USAGE') AS privileged
             FROM pg_roles WHERE rolname = $1`,
          [r.role],
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
        for (const [i, sql] of rendered.entries()) await query(c, sql, [], `revocation statement ${i + 1} of ${rendered.length}`);
        await query(c, 'COMMIT', [], 'committing the revocation statements');
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
      if (unterminated > 0)
        throw new CredentialEngineError(
          'statement_failed',
          `role ${r.role} is revoked, but ${unterminated} of its open sessions could not be ended: the admin role needs the role's privileges or pg_signal_backend (docs/dynamic-secrets.md)`,
          '42501',
        );
    });
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
    const client = new pg.Client({
      host: target.host,
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
    try {
      await client.connect();
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
 * TLS modes (docs/dynamic-secrets.md): `verify-full` checks the chain (against the connection's
 * CA, or the system's roots without one) and the host name; `require` encrypts but verifies
 * nothing, so it stops eavesdropping, not an active man in the middle; `disable` is plaintext.
 */
export function sslOptions(target: Pick<ConnectionTarget, 'tlsMode' | 'caCertificate'>): false | ConnectionOptions {
  switch (target.tlsMode) {
    case 'disable':
      return false;
    case 'require':
      return { rejectUnauthorized: false };
    case 'verify-full':
      // pg passes the host to tls.connect, which checks the certificate's names against it.
      return { rejectUnauthorized: true, ...(target.caCertificate ? { ca: target.caCertificate } : {}), minVersion: 'TLSv1.2' };
  }
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
    return await c.query<R>(sql, params);
  } catch (err) {
    throw engineError(err, what);
  }
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
