import { AppEntity } from './apps/app.entity.js';
import { ApiTokenEntity } from './auth/api-token.entity.js';
import { ClusterEntity, EnrollmentTokenEntity } from './clusters/cluster.entity.js';
import { DatabaseConnectionEntity } from './connections/connection.entity.js';
import { ProjectEntity } from './projects/project.entity.js';
import { SecretEntity, SecretVersionEntity } from './secrets/secret.entity.js';
import { LeaseEntity } from './leases/lease.entity.js';

/**
 * Every entity TypeORM maps; features add theirs here. The composition root hands the list to
 * DatabaseModule.forRoot, so database/ depends on no feature.
 */
export const entities = [
  ApiTokenEntity,
  ProjectEntity,
  AppEntity,
  SecretEntity,
  SecretVersionEntity,
  ClusterEntity,
  EnrollmentTokenEntity,
  LeaseEntity,
  DatabaseConnectionEntity,
];
