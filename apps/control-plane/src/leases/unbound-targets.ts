import type { ConnectionTarget, CredentialEngine } from '../connections/engines/credential-engine.js';
import type { ConnectionRef, CredentialTargets } from './credential-targets.js';

/**
 * The binding of CREDENTIAL_TARGETS until connections/ (ConnectionsService) is merged: no
 * project has a connection, so no dynamic secret can be created and the sweeps find no work.
 */
export class NoCredentialTargets implements CredentialTargets {
  describe(): Promise<ConnectionRef | null> {
    return Promise.resolve(null);
  }
  target(): Promise<ConnectionTarget> {
    return Promise.reject(new Error('no database connections are configured'));
  }
  targetById(): Promise<ConnectionTarget> {
    return Promise.reject(new Error('no database connections are configured'));
  }
  engineFor(): CredentialEngine {
    throw new Error('no credential engine is configured');
  }
  all(): Promise<ConnectionRef[]> {
    return Promise.resolve([]);
  }
}
