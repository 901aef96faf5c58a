import { Module } from '@nestjs/common';
import { KeysModule } from '../keys/keys.module.js';
import { ClusterCaRepository } from './cluster-ca.repository.js';
import { ClusterCertificateAuthority } from './cluster-ca.service.js';

/** Agent enrollment. Today: the cluster CA (HSM key) that issues agents' client certificates. */
@Module({ imports: [KeysModule], providers: [ClusterCaRepository, ClusterCertificateAuthority], exports: [ClusterCertificateAuthority] })
export class EnrollmentModule {}
