import { Module } from '@nestjs/common';
import { ClustersController } from './clusters.controller.js';
import { ClustersRepository } from './clusters.repository.js';
import { ClustersService } from './clusters.service.js';

@Module({ providers: [ClustersRepository, ClustersService], controllers: [ClustersController], exports: [ClustersService] })
export class ClustersModule {}
