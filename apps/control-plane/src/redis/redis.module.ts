import { Inject, Injectable, Module, type OnApplicationShutdown } from '@nestjs/common';
import { Redis } from 'ioredis';
import { RuntimeConfig } from '../config/runtime-config.js';

/** Options every Sigil Redis connection shares: reconnect forever, with a capped backoff. */
export function redisOptions(url: string) {
  return {
    lazyConnect: false,
    connectTimeout: 2_000,
    retryStrategy: (attempt: number) => Math.min(100 * 2 ** attempt, 2_000),
    // url is parsed by ioredis; credentials never appear in our logs.
    connectionName: 'sigil',
    ...(url.startsWith('rediss:') ? { tls: {} } : {}),
  };
}

/** ioredis connection options from a redis:// or rediss:// URL (for BullMQ, which opens its own connections). */
export function redisConnectionOptions(url: string) {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: Number(u.port || 6379),
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    db: Number(u.pathname.slice(1) || 0),
    ...redisOptions(url),
    maxRetriesPerRequest: null,
  };
}

/** The shared command connection (queues open their own, as BullMQ requires). */
@Injectable()
export class RedisConnection implements OnApplicationShutdown {
  readonly client: Redis;

  constructor(@Inject(RuntimeConfig) config: RuntimeConfig) {
    this.client = new Redis(config.redis.url, { ...redisOptions(config.redis.url), maxRetriesPerRequest: 1, enableOfflineQueue: false });
    // Connection errors surface through /readyz; ioredis keeps reconnecting.
    this.client.on('error', () => undefined);
  }

  async check(): Promise<string> {
    if (this.client.status !== 'ready') throw new Error(`connection ${this.client.status}`);
    const pong = await this.client.ping();
    if (pong !== 'PONG') throw new Error(`unexpected PING reply`);
    return 'ok';
  }

  async onApplicationShutdown(): Promise<void> {
    await this.client.quit().catch(() => this.client.disconnect());
  }
}

@Module({ providers: [RedisConnection], exports: [RedisConnection] })
export class RedisModule {}
