import { BullModule } from '@nestjs/bullmq';
import { Module, type DynamicModule } from '@nestjs/common';
import { ClustersModule } from '../clusters/clusters.module.js';
import { RuntimeConfig } from '../config/runtime-config.js';
import { EventsModule } from '../events/cluster-events.js';
import { HsmModule } from '../hsm/hsm.module.js';
import { ProjectsModule } from '../projects/projects.module.js';
import { redisConnectionOptions } from '../redis/redis.module.js';
import { DeliveryBuilder } from './delivery-builder.js';
import { DeliveryQueue, DELIVERY_QUEUE } from './delivery-queue.js';
import { DeliveryProcessor } from './delivery.processor.js';
import { MembershipService } from './membership.service.js';
import { PlacementRepository } from './placement.repository.js';
import { SnapshotBuildRepository } from './snapshot-build.repository.js';

/**
 * Delivery: placements and membership (who gets what), per-cluster build jobs on BullMQ and the
 * snapshot builder. Other features use MembershipService: apps and secrets run their changes
 * through it, clusters and enrollment tell it about clusters, publications edits placements.
 */
@Module({
  imports: [
    BullModule.forRootAsync({
      inject: [RuntimeConfig],
      useFactory: (c: RuntimeConfig) => ({ connection: redisConnectionOptions(c.redis.url), prefix: c.redis.prefix }),
    }),
    BullModule.registerQueue({ name: DELIVERY_QUEUE }),
    ProjectsModule,
    ClustersModule,
    EventsModule,
    HsmModule,
  ],
  providers: [PlacementRepository, SnapshotBuildRepository, DeliveryQueue, DeliveryBuilder, MembershipService],
  exports: [MembershipService, DeliveryQueue, DeliveryBuilder, EventsModule, ClustersModule],
})
export class DeliveryModule {}

/** The build-job processor, only in processes with the `worker` role. */
@Module({})
export class DeliveryWorkerModule {
  static register(config: RuntimeConfig): DynamicModule {
    return {
      module: DeliveryWorkerModule,
      imports: [DeliveryModule],
      providers: config.roles.includes('worker') ? [DeliveryProcessor] : [],
    };
  }
}
