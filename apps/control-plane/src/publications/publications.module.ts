import { Module } from '@nestjs/common';
import { AppsModule } from '../apps/apps.module.js';
import { DeliveryModule } from '../delivery/delivery.module.js';
import { ProjectsModule } from '../projects/projects.module.js';
import { IdempotencyRepository } from './idempotency.repository.js';
import { IdempotencyService } from './idempotency.js';
import { PublicationStatusRepository } from './publication-status.repository.js';
import { PublicationWaiters } from './publication-waiters.js';
import { PublicationsController } from './publications.controller.js';
import { PublicationsService } from './publications.service.js';

/**
 * The publications API: publish and unpublish apps (placements, applied through delivery's
 * MembershipService), projects' cluster selectors, and where each app's delivery stands.
 */
@Module({
  imports: [AppsModule, ProjectsModule, DeliveryModule],
  controllers: [PublicationsController],
  providers: [PublicationsService, PublicationStatusRepository, PublicationWaiters, IdempotencyRepository, IdempotencyService],
  exports: [PublicationsService],
})
export class PublicationsModule {}
