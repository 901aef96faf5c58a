import { BullModule } from '@nestjs/bullmq';
import { Module, type DynamicModule } from '@nestjs/common';
import { AppsModule } from '../apps/apps.module.js';
import { RuntimeConfig } from '../config/runtime-config.js';
import { KeysModule } from '../keys/keys.module.js';
import { ProjectsModule } from '../projects/projects.module.js';
import { redisConnectionOptions } from '../redis/redis.module.js';
import { DeliveryBuilder } from './delivery-builder.js';
import { DeliveryQueue, DELIVERY_QUEUE } from './delivery-queue.js';
import { DeliveryProcessor } from './delivery.processor.js';
import { DeliveryRepository } from './delivery.repository.js';
import { IdempotencyService } from './idempotency.js';
import { MembershipService } from './membership.service.js';
import { PublicationWaiters } from './publication-waiters.js';
import { PublicationsController } from './publications.controller.js';
import { PublicationsService } from './publications.service.js';

/**
 * Publications and delivery: placements, membership, per-cluster jobs on BullMQ, the snapshot
 * builder, and publication status. The job processor runs only in processes with the `worker` role.
 */
@Module({})
export class DeliveryModule {
  static register(config: RuntimeConfig): DynamicModule {
    return {
      module: DeliveryModule,
      global: true,
      imports: [
        BullModule.forRootAsync({
          inject: [RuntimeConfig],
          useFactory: (c: RuntimeConfig) => ({ connection: redisConnectionOptions(c.redis.url), prefix: c.redis.prefix }),
        }),
        BullModule.registerQueue({ name: DELIVERY_QUEUE }),
        AppsModule,
        ProjectsModule,
        KeysModule,
      ],
      controllers: [PublicationsController],
      providers: [
        DeliveryRepository,
        DeliveryQueue,
        DeliveryBuilder,
        MembershipService,
        PublicationsService,
        PublicationWaiters,
        IdempotencyService,
        ...(config.roles.includes('worker') ? [DeliveryProcessor] : []),
      ],
      exports: [MembershipService, DeliveryRepository, DeliveryQueue],
    };
  }
}
