import { Module } from '@nestjs/common';
import { AppsModule } from '../apps/apps.module.js';
import { KeysModule } from '../keys/keys.module.js';
import { SecretsController } from './secrets.controller.js';
import { SecretsRepository } from './secrets.repository.js';
import { SecretsService } from './secrets.service.js';

@Module({
  imports: [AppsModule, KeysModule],
  providers: [SecretsRepository, SecretsService],
  controllers: [SecretsController],
  exports: [SecretsService],
})
export class SecretsModule {}
