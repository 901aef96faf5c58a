import { featureError, type ErrorKinds } from '../common/sigil-error.js';

/** Codes of database connections. */
export enum ConnectionsErrorCode {
  ConnectionNotFound = 'connection_not_found',
  ConnectionExists = 'connection_exists',
  /** A dynamic secret still creates roles through it (ConnectionsService.onUsageCheck). */
  ConnectionInUse = 'connection_in_use',
  /** Another connection of this installation has the role prefix: each would reap the other's roles. */
  RolePrefixTaken = 'role_prefix_taken',
  InvalidConnection = 'invalid_connection',
  /** Where the admin password would be sent changes (host, port, user, TLS): the request must carry the password. */
  AdminPasswordRequired = 'admin_password_required',
  /** The server would change while roles issued on the old one may still exist there. */
  ConnectionHasLiveRoles = 'connection_has_live_roles',
  /** The host is Sigil's own PostgreSQL or Redis, or outside the networks connections may reach (SIGIL_CONNECTION_*_NETWORKS). */
  ConnectionHostDenied = 'connection_host_denied',
  /** The target database refused or could not be reached; `reason` is the engine's code (unreachable, auth_failed, tls_failed, statement_failed). */
  ConnectionFailed = 'connection_failed',
}

export const CONNECTIONS_ERROR_KINDS: ErrorKinds<ConnectionsErrorCode> = {
  [ConnectionsErrorCode.ConnectionNotFound]: 'not_found',
  [ConnectionsErrorCode.ConnectionExists]: 'conflict',
  [ConnectionsErrorCode.ConnectionInUse]: 'conflict',
  [ConnectionsErrorCode.RolePrefixTaken]: 'conflict',
  [ConnectionsErrorCode.InvalidConnection]: 'invalid',
  [ConnectionsErrorCode.AdminPasswordRequired]: 'invalid',
  [ConnectionsErrorCode.ConnectionHasLiveRoles]: 'conflict',
  [ConnectionsErrorCode.ConnectionHostDenied]: 'invalid',
  [ConnectionsErrorCode.ConnectionFailed]: 'upstream_failed',
};

export class ConnectionsError extends featureError(CONNECTIONS_ERROR_KINDS) {}
