import { Module } from '@nestjs/common';
import { EnrollmentModule } from '../enrollment/enrollment.module.js';
import { EventsModule } from '../events/cluster-events.js';
import { HsmModule } from '../hsm/hsm.module.js';
import { InjectionModule } from '../injection/injection.module.js';
import { KeysModule } from '../keys/keys.module.js';
import { AgentCaController } from './agent-ca.controller.js';
import { AgentClusterRepository } from './agent-cluster.repository.js';
import { AgentAuthenticator } from './agent-authenticator.js';
import { AgentGrpcServer } from './agent-grpc.server.js';
import { AgentService } from './agent.service.js';
import { SessionTicketRepository } from './session-ticket.repository.js';
import { SnapshotRepository } from './snapshot.repository.js';
import { SyncStreams } from './sync-streams.js';

/** The gRPC API agents call: mTLS server, per-cluster authorisation, Sync streams (reading built snapshots, writing agents' reports). */
@Module({
  imports: [EnrollmentModule, KeysModule, EventsModule, HsmModule, InjectionModule],
  controllers: [AgentCaController],
  providers: [
    AgentClusterRepository,
    AgentAuthenticator,
    SnapshotRepository,
    SessionTicketRepository,
    SyncStreams,
    AgentService,
    AgentGrpcServer,
  ],
  exports: [AgentGrpcServer, SyncStreams],
})
export class AgentApiModule {}
