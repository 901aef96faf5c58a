import { Module } from '@nestjs/common';
import { KeysModule } from '../keys/keys.module.js';
import { ProjectsModule } from '../projects/projects.module.js';
import { ConnectionsController } from './connections.controller.js';
import { ConnectionsRepository } from './connections.repository.js';
import { ConnectionsService } from './connections.service.js';

/** Database connections and their credential engines (docs/dynamic-secrets.md, "Connections"). */
@Module({
  imports: [ProjectsModule, KeysModule],
  providers: [ConnectionsRepository, ConnectionsService],
  controllers: [ConnectionsController],
  exports: [ConnectionsService],
})
export class ConnectionsModule {}
