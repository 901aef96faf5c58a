import { Module } from '@nestjs/common';
import { AppsModule } from '../apps/apps.module.js';
import { AuditModule } from '../audit/audit.module.js';
import { DeliveryModule } from '../delivery/delivery.module.js';
import { HsmModule } from '../hsm/hsm.module.js';
import { KeysModule } from '../keys/keys.module.js';
import { LeasesModule } from '../leases/leases.module.js';
import { RotationSweep } from './rotation-sweep.js';
import { SecretsController } from './secrets.controller.js';
import { SecretsRepository } from './secrets.repository.js';
import { SecretsService } from './secrets.service.js';

@Module({
  imports: [AppsModule, KeysModule, DeliveryModule, HsmModule, AuditModule, LeasesModule],
  providers: [SecretsRepository, SecretsService, RotationSweep],
  controllers: [SecretsController],
  exports: [SecretsService],
})
export class SecretsModule {}
