import { Module } from '@nestjs/common';
import { EventsModule } from '../events/cluster-events.js';
import { ProjectsModule } from '../projects/projects.module.js';
import { ClusterEnrollmentRepository } from './cluster-enrollment.repository.js';
import { ClustersController } from './clusters.controller.js';
import { ClustersRepository } from './clusters.repository.js';
import { ClustersService } from './clusters.service.js';

@Module({
  imports: [EventsModule, ProjectsModule],
  providers: [ClustersRepository, ClusterEnrollmentRepository, ClustersService],
  controllers: [ClustersController],
  exports: [ClustersService, ClusterEnrollmentRepository],
})
export class ClustersModule {}
