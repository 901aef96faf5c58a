import { Module, type DynamicModule } from '@nestjs/common';
import type { Logger } from '@sigil/logging';
import { RuntimeConfig } from './config/runtime-config.js';
import { DatabaseModule } from './database/database.module.js';
import { HealthModule } from './health/health.module.js';
import { APP_PIPE } from '@nestjs/core';
import { AppsModule } from './apps/apps.module.js';
import { AuditModule } from './audit/audit.module.js';
import { AuthModule } from './auth/auth.module.js';
import { ClustersModule } from './clusters/clusters.module.js';
import { ConnectionsModule } from './connections/connections.module.js';
import { DtoValidationPipe } from './common/validation.pipe.js';
import { EnrollmentModule } from './enrollment/enrollment.module.js';
import { EventsModule } from './events/cluster-events.js';
import { AgentApiModule } from './agent-api/agent-api.module.js';
import { InjectionModule } from './injection/injection.module.js';
import { DeliveryModule, DeliveryWorkerModule } from './delivery/delivery.module.js';
import { entities } from './entities.js';
import { ApiTokensModule } from './api-tokens/api-tokens.module.js';
import { ConsoleModule } from './console/console.module.js';
import { PublicationsModule } from './publications/publications.module.js';
import { HsmModule } from './hsm/hsm.module.js';
import { ProjectsModule } from './projects/projects.module.js';
import { SecretsModule } from './secrets/secrets.module.js';
import { KeysModule } from './keys/keys.module.js';
import { LoggingModule } from './logging/logging.module.js';
import { MetricsModule } from './metrics/metrics.module.js';
import { RedisModule } from './redis/redis.module.js';

/** Infrastructure first, then features; each feature module owns its folder. */
@Module({})
export class AppModule {
  static register(config: RuntimeConfig, logger: Logger): DynamicModule {
    return {
      module: AppModule,
      imports: [
        // Global: configuration, logging, metrics and the database are used everywhere and depend
        // on no feature. Everything else is imported by the modules that use it.
        { module: ConfigHolder, global: true, providers: [{ provide: RuntimeConfig, useValue: config }], exports: [RuntimeConfig] },
        LoggingModule.forRoot(logger),
        MetricsModule,
        DatabaseModule.forRoot(entities),
        RedisModule,
        EventsModule,
        HsmModule,
        HealthModule,
        KeysModule,
        AuthModule,
        ApiTokensModule,
        ConsoleModule,
        AuditModule,
        ProjectsModule,
        AppsModule,
        SecretsModule,
        ConnectionsModule,
        ClustersModule,
        DeliveryModule,
        DeliveryWorkerModule.register(config),
        PublicationsModule,
        EnrollmentModule,
        AgentApiModule,
        InjectionModule,
      ],
      providers: [{ provide: APP_PIPE, useClass: DtoValidationPipe }],
    };
  }
}

@Module({})
class ConfigHolder {}
