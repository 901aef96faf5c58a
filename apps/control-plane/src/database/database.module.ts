import { Global, Inject, Injectable, Module, type DynamicModule, type OnApplicationShutdown } from '@nestjs/common';
import { DataSource, type DataSourceOptions } from 'typeorm';
import { RuntimeConfig } from '../config/runtime-config.js';
import { openDatabase } from './data-source.js';
import { AgentWorkQueue } from './agent-work-queue.js';
import { UnitOfWork } from './transaction.js';

@Injectable()
export class DatabaseHealth implements OnApplicationShutdown {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  async check(): Promise<string> {
    await this.ds.query('SELECT 1');
    return 'ok';
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.ds.isInitialized) await this.ds.destroy();
  }
}

/**
 * The DataSource, the UnitOfWork and the agents' work queue. Global, as configuration and
 * logging are: every feature's repositories use it, and it imports no feature (the composition
 * root passes the entity list in, apps/control-plane/src/entities.ts), so it hides no cycle.
 */
@Global()
@Module({})
export class DatabaseModule {
  static forRoot(entities: DataSourceOptions['entities']): DynamicModule {
    return {
      module: DatabaseModule,
      providers: [
        {
          provide: DataSource,
          inject: [RuntimeConfig],
          useFactory: (config: RuntimeConfig) => openDatabase(config.db.url, config.db.poolSize, entities),
        },
        DatabaseHealth,
        AgentWorkQueue,
        UnitOfWork,
      ],
      exports: [DataSource, DatabaseHealth, AgentWorkQueue, UnitOfWork],
    };
  }
}
