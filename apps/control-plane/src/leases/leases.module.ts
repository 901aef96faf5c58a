import { Module } from '@nestjs/common';
import { AppsModule } from '../apps/apps.module.js';
import { AuditModule } from '../audit/audit.module.js';
import { DeliveryModule } from '../delivery/delivery.module.js';
import { HsmModule } from '../hsm/hsm.module.js';
import { KeysModule } from '../keys/keys.module.js';
import { CREDENTIAL_TARGETS } from './credential-targets.js';
import { LeaseAudit } from './lease-audit.js';
import { LeaseIssuer } from './lease-issuer.js';
import { LeaseRevoker } from './lease-revoker.js';
import { LeaseSweep } from './lease-sweep.js';
import { LeasesController } from './leases.controller.js';
import { LeasesRepository } from './leases.repository.js';
import { LeasesService } from './leases.service.js';
import { ConnectionsModule } from '../connections/connections.module.js';
import { ConnectionTargets } from './connection-targets.js';

/**
 * Dynamic secrets' leases (docs/dynamic-secrets.md): per-cluster database credentials issued,
 * renewed and revoked by level-triggered sweeps in the worker role. Database connections come
 * through the CREDENTIAL_TARGETS port, bound to connections/ (ConnectionTargets).
 */
@Module({
  imports: [AppsModule, KeysModule, DeliveryModule, HsmModule, AuditModule, ConnectionsModule],
  providers: [
    LeasesRepository,
    LeaseAudit,
    LeaseIssuer,
    LeaseRevoker,
    LeaseSweep,
    LeasesService,
    ConnectionTargets,
    { provide: CREDENTIAL_TARGETS, useExisting: ConnectionTargets },
  ],
  controllers: [LeasesController],
  exports: [LeasesService],
})
export class LeasesModule {}
