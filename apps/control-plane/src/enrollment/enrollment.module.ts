import { Module } from '@nestjs/common';
import { AuditModule } from '../audit/audit.module.js';
import { ClustersModule } from '../clusters/clusters.module.js';
import { DeliveryModule } from '../delivery/delivery.module.js';
import { EventsModule } from '../events/cluster-events.js';
import { HsmModule } from '../hsm/hsm.module.js';
import { KeysModule } from '../keys/keys.module.js';
import { ClusterCaRepository } from './cluster-ca.repository.js';
import { ClusterCertificateAuthority } from './cluster-ca.service.js';
import { EnrollmentService } from './enrollment.service.js';
import { ServiceAccountTokenVerifier } from './service-account-tokens.js';

/** Agent enrollment: the cluster CA (HSM key), bootstrap tokens and Kubernetes service-account identity. */
@Module({
  imports: [KeysModule, AuditModule, ClustersModule, DeliveryModule, EventsModule, HsmModule],
  providers: [ClusterCaRepository, ClusterCertificateAuthority, ServiceAccountTokenVerifier, EnrollmentService],
  exports: [ClusterCertificateAuthority, EnrollmentService],
})
export class EnrollmentModule {}
