import { Module } from '@nestjs/common';
import { AppsModule } from '../apps/apps.module.js';
import { DeliveryModule } from '../delivery/delivery.module.js';
import { ProjectsModule } from '../projects/projects.module.js';
import { IdempotencyRepository } from './idempotency.repository.js';
import { IdempotencyService } from './idempotency.js';
import { PublicationStatusRepository } from './publication-status.repository.js';
import { PublicationWaiters } from './publication-waiters.js';
import { DeliveryStreams } from './delivery-streams.js';
import { PublicationsController } from './publications.controller.js';
import { PublicationsService } from './publications.service.js';

/**
 * The publications API: publish and unpublish apps (placements, applied through delivery's
 * MembershipService), projects' cluster selectors, where each app's delivery stands, and the
 * fleet view: the paged deliveries list, its event stream (DeliveryStreams) and publish previews.
 */
@Module({
  imports: [AppsModule, ProjectsModule, DeliveryModule],
  controllers: [PublicationsController],
  providers: [
    PublicationsService,
    PublicationStatusRepository,
    PublicationWaiters,
    DeliveryStreams,
    IdempotencyRepository,
    IdempotencyService,
  ],
  exports: [PublicationsService],
})
export class PublicationsModule {}
