import { Global, Inject, Injectable, Module, type OnApplicationShutdown } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { RuntimeConfig } from '../config/runtime-config.js';
import { openDatabase } from './data-source.js';
import { AgentWorkQueue } from './agent-work-queue.js';

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

@Global()
@Module({
  providers: [
    {
      provide: DataSource,
      inject: [RuntimeConfig],
      useFactory: (config: RuntimeConfig) => openDatabase(config.db.url, config.db.poolSize),
    },
    DatabaseHealth,
    AgentWorkQueue,
  ],
  exports: [DataSource, DatabaseHealth, AgentWorkQueue],
})
export class DatabaseModule {}
