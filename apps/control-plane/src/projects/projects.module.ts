import { Module } from '@nestjs/common';
import { ProjectNamespacesRepository } from './project-namespaces.repository.js';
import { ProjectsController } from './projects.controller.js';
import { ProjectsRepository } from './projects.repository.js';
import { ProjectsService } from './projects.service.js';

@Module({
  providers: [ProjectsRepository, ProjectNamespacesRepository, ProjectsService],
  controllers: [ProjectsController],
  exports: [ProjectsService],
})
export class ProjectsModule {}
