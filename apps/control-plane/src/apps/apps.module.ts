import { Module } from '@nestjs/common';
import { DeliveryModule } from '../delivery/delivery.module.js';
import { ProjectsModule } from '../projects/projects.module.js';
import { AppsController } from './apps.controller.js';
import { AppsRepository } from './apps.repository.js';
import { AppsService } from './apps.service.js';

@Module({
  imports: [ProjectsModule, DeliveryModule],
  providers: [AppsRepository, AppsService],
  controllers: [AppsController],
  exports: [AppsService],
})
export class AppsModule {}
