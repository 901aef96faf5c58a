import type { Tx } from '../database/transaction.js';
import type { ConnectionTarget, CredentialEngine, EngineName } from '../connections/engines/credential-engine.js';

/** A database connection as leases name it: no secret in it. */
export interface ConnectionRef {
  id: string;
  projectId: string;
  name: string;
  engine: EngineName;
  /** Every role of this connection starts with it (the reaper lists roles by it). */
  rolePrefix: string;
}

/**
 * What leases need of the project's database connections (connections/, ConnectionsService):
 * a port with a token, so leases depend on no connections internals and tests bind a fake.
 * `target` and `targetById` open the admin password for one engine call; the caller zeroes it.
 */
export interface CredentialTargets {
  /**
   * The connection `name` of the project, or null when there is none. With `hold`, its row is
   * locked FOR KEY SHARE until `tx` ends: a delete of it waits, then sees what `tx` wrote.
   */
  describe(tx: Tx | undefined, projectId: string, name: string, hold?: boolean): Promise<ConnectionRef | null>;
  target(tx: Tx | undefined, projectId: string, connectionName: string): Promise<ConnectionTarget>;
  /** By id: a lease outlives its secret, and revokes through the connection it was issued by. */
  targetById(tx: Tx | undefined, projectId: string, connectionId: string): Promise<ConnectionTarget>;
  engineFor(engine: EngineName): CredentialEngine;
  /** Every connection of every project (the reaper's work list). */
  all(): Promise<ConnectionRef[]>;
}

export const CREDENTIAL_TARGETS = Symbol('CredentialTargets');
