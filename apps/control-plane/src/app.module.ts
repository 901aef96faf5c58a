import { Module, type DynamicModule } from '@nestjs/common';
import type { Logger } from '@sigil/logging';
import { RuntimeConfig } from './config/runtime-config.js';
import { DatabaseModule } from './database/database.module.js';
import { HealthModule } from './health/health.module.js';
import { HsmModule } from './hsm/hsm.module.js';
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
        { module: ConfigHolder, global: true, providers: [{ provide: RuntimeConfig, useValue: config }], exports: [RuntimeConfig] },
        LoggingModule.forRoot(logger),
        MetricsModule,
        DatabaseModule,
        RedisModule,
        HsmModule,
        HealthModule,
        KeysModule,
      ],
    };
  }
}

@Module({})
class ConfigHolder {}
