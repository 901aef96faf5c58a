import { Module } from '@nestjs/common';
import { DeliveryModule } from '../delivery/delivery.module.js';
import { EventsModule } from '../events/cluster-events.js';
import { ProjectsModule } from '../projects/projects.module.js';
import { ClustersController } from './clusters.controller.js';
import { ClustersRepository } from './clusters.repository.js';
import { ClustersService } from './clusters.service.js';

@Module({
  imports: [DeliveryModule, EventsModule, ProjectsModule],
  providers: [ClustersRepository, ClustersService],
  controllers: [ClustersController],
  exports: [ClustersService],
})
export class ClustersModule {}
