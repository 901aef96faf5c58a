import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { ConnectionsError, ConnectionsErrorCode } from '../connections/connections.errors.js';
import { ConnectionsService } from '../connections/connections.service.js';
import type { ConnectionTarget, CredentialEngine, EngineName } from '../connections/engines/credential-engine.js';
import type { Tx } from '../database/transaction.js';
import type { ConnectionRef, CredentialTargets } from './credential-targets.js';
import { LeasesRepository } from './leases.repository.js';

/**
 * CREDENTIAL_TARGETS bound to the project's registered database connections (connections/).
 * It also tells connections/ who uses a connection: one that dynamic secrets name, or that live
 * leases were issued through, cannot be deleted (their roles could not be revoked any more).
 */
@Injectable()
export class ConnectionTargets implements CredentialTargets, OnModuleInit {
  constructor(
    @Inject(ConnectionsService) private readonly connections: ConnectionsService,
    @Inject(LeasesRepository) private readonly repo: LeasesRepository,
  ) {}

  onModuleInit(): void {
    this.connections.onUsageCheck((tx, connectionId) => this.repo.connectionUsers(tx, connectionId));
    this.connections.onLiveRolesCheck((tx, connectionId) => this.repo.liveLeaseCount(tx, connectionId));
  }

  async describe(tx: Tx | undefined, projectId: string, name: string, hold = false): Promise<ConnectionRef | null> {
    try {
      const c = await this.connections.find(tx, projectId, name, hold);
      return { id: c.id, projectId: c.projectId, name: c.name, engine: c.engine, rolePrefix: c.rolePrefix };
    } catch (err) {
      if (err instanceof ConnectionsError && err.code === ConnectionsErrorCode.ConnectionNotFound) return null;
      throw err;
    }
  }

  target(tx: Tx | undefined, projectId: string, connectionName: string): Promise<ConnectionTarget> {
    return this.connections.target(tx, projectId, connectionName);
  }

  targetById(tx: Tx | undefined, _projectId: string, connectionId: string): Promise<ConnectionTarget> {
    return this.connections.targetById(tx, connectionId);
  }

  engineFor(engine: EngineName): CredentialEngine {
    return this.connections.engineFor(engine);
  }

  all(): Promise<ConnectionRef[]> {
    return this.repo.allConnections();
  }
}
