import { Module } from '@nestjs/common';
import { AppsModule } from '../apps/apps.module.js';
import { GrantsRepository } from './grants.repository.js';
import { GrantsService } from './grants.service.js';
import { InjectionController } from './injection.controller.js';
import { InjectionService } from './injection.service.js';

/**
 * Delivery mode inject, the centre's side: the grants agents report (GrantsService, fed by the
 * Sync streams) and the consumption view of an app built from them.
 */
@Module({
  imports: [AppsModule],
  providers: [GrantsRepository, GrantsService, InjectionService],
  controllers: [InjectionController],
  exports: [GrantsService],
})
export class InjectionModule {}
