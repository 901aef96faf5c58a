import { Module } from '@nestjs/common';
import { EnrollmentModule } from '../enrollment/enrollment.module.js';
import { KeysModule } from '../keys/keys.module.js';
import { AgentCaController } from './agent-ca.controller.js';
import { AgentClusterRepository } from './agent-cluster.repository.js';
import { AgentAuthenticator } from './agent-authenticator.js';
import { AgentGrpcServer } from './agent-grpc.server.js';
import { AgentService } from './agent.service.js';
import { SyncStreams } from './sync-streams.js';
import { SnapshotRepository } from '../delivery/snapshot.repository.js';

/** The gRPC API agents call: mTLS server, per-cluster authorisation, Sync streams. */
@Module({
  imports: [EnrollmentModule, KeysModule], // DeliveryModule is global
  controllers: [AgentCaController],
  providers: [AgentClusterRepository, AgentAuthenticator, SnapshotRepository, SyncStreams, AgentService, AgentGrpcServer],
  exports: [AgentGrpcServer, SyncStreams],
})
export class AgentApiModule {}
