import { Module } from '@nestjs/common';
import { EnrollmentModule } from '../enrollment/enrollment.module.js';
import { KeysModule } from '../keys/keys.module.js';
import { AgentCaController } from './agent-ca.controller.js';
import { AgentClusterRepository } from './agent-cluster.repository.js';
import { AgentAuthenticator } from './agent-authenticator.js';
import { AgentGrpcServer } from './agent-grpc.server.js';
import { AgentStateService } from './agent-state.service.js';
import { AgentService } from './agent.service.js';
import { WatchStreams } from './watch-streams.js';

/** The gRPC API agents call: mTLS server, per-cluster authorisation, Watch streams, state. */
@Module({
  imports: [EnrollmentModule, KeysModule], // DeliveryModule is global
  controllers: [AgentCaController],
  providers: [AgentClusterRepository, AgentAuthenticator, WatchStreams, AgentStateService, AgentService, AgentGrpcServer],
  exports: [AgentGrpcServer, WatchStreams],
})
export class AgentApiModule {}
