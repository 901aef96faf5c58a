import type { Tx } from '../database/transaction.js';
import type { ConnectionTarget, CredentialEngine, EngineName } from '../connections/engines/credential-engine.js';
import type { ConnectionRef, CredentialTargets } from './credential-targets.js';

/**
 * The binding of CREDENTIAL_TARGETS until connections/ (ConnectionsService) is merged: no
 * project has a connection — so no dynamic secret can be created and the sweeps find no work —
 * unless an implementation is bound with `use` (the integration tests bind the real PostgreSQL
 * engine and a target database this way). Replaced by ConnectionsService at the merge.
 */
export class InterimCredentialTargets implements CredentialTargets {
  private bound: CredentialTargets | undefined;

  use(impl: CredentialTargets | undefined): void {
    this.bound = impl;
  }

  describe(tx: Tx | undefined, projectId: string, name: string): Promise<ConnectionRef | null> {
    return this.bound ? this.bound.describe(tx, projectId, name) : Promise.resolve(null);
  }
  target(tx: Tx | undefined, projectId: string, connectionName: string): Promise<ConnectionTarget> {
    return this.bound
      ? this.bound.target(tx, projectId, connectionName)
      : Promise.reject(new Error('no database connections are configured'));
  }
  targetById(tx: Tx | undefined, projectId: string, connectionId: string): Promise<ConnectionTarget> {
    return this.bound
      ? this.bound.targetById(tx, projectId, connectionId)
      : Promise.reject(new Error('no database connections are configured'));
  }
  engineFor(engine: EngineName): CredentialEngine {
    if (!this.bound) throw new Error('no credential engine is configured');
    return this.bound.engineFor(engine);
  }
  all(): Promise<ConnectionRef[]> {
    return this.bound ? this.bound.all() : Promise.resolve([]);
  }
}
