/**
 * The seam between Sigil and a target database (docs/dynamic-secrets.md, decision 019): an engine
 * connects with a registered connection's admin credential and creates, revokes and lists the
 * short-lived roles of dynamic secrets. One implementation per database engine; PostgreSQL first.
 */

export type EngineName = 'postgresql';
export const ENGINE_NAMES: readonly EngineName[] = ['postgresql'];

/** How the engine's connection to the target database is protected (docs/dynamic-secrets.md, "TLS modes"). */
export type TlsMode = 'disable' | 'require' | 'verify-full';
export const TLS_MODES: readonly TlsMode[] = ['disable', 'require', 'verify-full'];

/** A registered connection with its admin password opened just for one call. */
export interface ConnectionTarget {
  id: string;
  host: string;
  port: number;
  database: string;
  /** The admin role Sigil connects as. */
  username: string;
  tlsMode: TlsMode;
  /** PEM; verify-full checks the server's certificate against it (the system's roots without it). */
  caCertificate?: string;
  /** Every role Sigil creates through this connection starts with it; listRoles finds them by it. */
  rolePrefix: string;
  /** Opened just for this call; the caller zeroes it afterwards. */
  adminPassword: Buffer;
}

export interface EngineServerInfo {
  serverVersion: string;
  /** Whether Sigil can issue credentials as the admin role (PostgreSQL: CREATEROLE and not a superuser, which is refused). */
  canCreateRoles: boolean;
  /** The admin is a superuser: Sigil refuses to issue through it (docs/dynamic-secrets.md). */
  superuser: boolean;
}

export interface CreateRoleRequest {
  /** The role's name; starts with the target's rolePrefix. */
  role: string;
  /** The generated password; the engine never logs or returns it. */
  password: Buffer;
  expiresAt: Date;
  /** Templates: {{name}}, {{password}}, {{expiration}}; run in one transaction. */
  statements: string[];
}

export interface RevokeRoleRequest {
  role: string;
  /** Templates with {{name}}; empty: the engine's default (terminate sessions, DROP ROLE IF EXISTS). */
  statements: string[];
}

/** Calls on one open connection to the target (CredentialEngine.session). */
export interface EngineSession {
  createRole(request: CreateRoleRequest): Promise<void>;
  revokeRole(request: RevokeRoleRequest): Promise<void>;
}

export interface CredentialEngine {
  readonly engine: EngineName;
  verify(target: ConnectionTarget): Promise<EngineServerInfo>;
  createRole(target: ConnectionTarget, request: CreateRoleRequest): Promise<void>;
  /** Idempotent: a role that does not exist is success. */
  revokeRole(target: ConnectionTarget, request: RevokeRoleRequest): Promise<void>;
  /** Many calls on one login: what a batch of issues or revocations uses. */
  session<T>(target: ConnectionTarget, fn: (s: EngineSession) => Promise<T>): Promise<T>;
  /** Roles whose name starts with target.rolePrefix. */
  listRoles(target: ConnectionTarget): Promise<string[]>;
}

/** host_denied: the host is Sigil's own service or outside the networks connections may reach (dial-policy.ts). */
export type CredentialEngineErrorCode = 'unreachable' | 'auth_failed' | 'statement_failed' | 'tls_failed' | 'host_denied';

/**
 * An engine's failure. The message never holds a password, a rendered statement (its
 * {{password}} is a verifier) or a connection string: it says what failed and, for a statement,
 * which one by index.
 */
export class CredentialEngineError extends Error {
  constructor(
    readonly code: CredentialEngineErrorCode,
    message: string,
    /** The database's own error code (SQLSTATE for PostgreSQL), when it gave one. */
    readonly databaseCode?: string,
  ) {
    super(message);
    this.name = 'CredentialEngineError';
  }
}
