import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Inject, Injectable, Module, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { Redis } from 'ioredis';
import { PinoLogger } from 'nestjs-pino';
import { RuntimeConfig } from '../config/runtime-config.js';
import { AgentPresence } from './agent-presence.js';
import { RedisConnection, RedisModule, redisOptions } from '../redis/redis.module.js';

/** Something every replica must hear about a cluster (or an app's placement), whichever replica caused it. */
export type ClusterEvent =
  /** Disabled, deleted or re-enrolled: drop its open streams and any cached authorisation. */
  | { type: 'access-changed'; clusterId: string }
  /**
   * New snapshots were built for these clusters: send them to their streams. No generation: the
   * stream reads the built one (and the rows) from PostgreSQL, so an event can only wake it.
   */
  | { type: 'desired'; clusterIds: string[] }
  /** Agents of these clusters reported what they applied, or delivering to them failed: publication status moved. */
  | { type: 'status'; clusterIds: string[] }
  /** The app was published or unpublished: where it should be moved. */
  | { type: 'placement-changed'; appId: string };

export type EventSource = 'local' | 'redis';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Whether a message from Redis has an event's shape. Anyone who can write to Redis can still
 * send a well-formed one: consumers treat every event as a hint and act on PostgreSQL's facts.
 */
function isClusterEvent(m: { type?: unknown; clusterId?: unknown; clusterIds?: unknown; appId?: unknown }): boolean {
  const id = (v: unknown) => typeof v === 'string' && UUID.test(v);
  const ids = (v: unknown) => Array.isArray(v) && v.length > 0 && v.length <= MAX_EVENT_CLUSTERS && v.every(id);
  switch (m.type) {
    case 'placement-changed':
      return id(m.appId);
    case 'access-changed':
      return id(m.clusterId);
    case 'status':
    case 'desired':
      return ids(m.clusterIds);
    default:
      return false;
  }
}

/** Events name at most this many clusters; publishers split larger sets (a message stays well under 100 KiB). */
export const MAX_EVENT_CLUSTERS = 2_000;

/**
 * Cluster events across replicas over Redis pub/sub. The replica that publishes also delivers
 * locally, at once and without Redis, so its own streams never depend on Redis being up. Pub/sub
 * is fire-and-forget: consumers treat events as hints and re-check PostgreSQL on a timer, so a
 * message lost while Redis is down delays, but never prevents, convergence. Nor do they take an
 * event's content as fact (Redis is not the system of record): a `desired` event's generation
 * is confirmed against PostgreSQL before it is pushed.
 */
@Injectable()
export class ClusterEvents implements OnModuleInit, OnApplicationShutdown {
  private readonly local = new EventEmitter().setMaxListeners(0);
  private readonly origin = randomUUID();
  private readonly channel: string;
  private subscriber: Redis | undefined;

  constructor(
    @Inject(RuntimeConfig) private readonly config: RuntimeConfig,
    @Inject(RedisConnection) private readonly redis: RedisConnection,
    @Inject(PinoLogger) private readonly logger: PinoLogger,
  ) {
    this.channel = `${config.redis.prefix}:cluster-events`;
    logger.setContext('cluster-events');
  }

  onModuleInit(): void {
    const sub = new Redis(this.config.redis.url, { ...redisOptions(this.config.redis.url), maxRetriesPerRequest: null });
    sub.on('error', () => undefined); // readiness reports Redis; ioredis reconnects and resubscribes
    sub.on('message', (_channel: string, raw: string) => {
      let msg: ClusterEvent & { origin?: string };
      try {
        msg = JSON.parse(raw) as ClusterEvent & { origin?: string };
      } catch {
        return;
      }
      if (msg.origin === this.origin || !isClusterEvent(msg)) return;
      const { origin: _o, ...event } = msg;
      this.deliver(event, 'redis');
    });
    void sub.subscribe(this.channel).catch(() => undefined);
    this.subscriber = sub;
  }

  async publish(event: ClusterEvent): Promise<void> {
    if ('clusterIds' in event && event.clusterIds.length > MAX_EVENT_CLUSTERS) {
      for (let i = 0; i < event.clusterIds.length; i += MAX_EVENT_CLUSTERS)
        await this.publish({ ...event, clusterIds: event.clusterIds.slice(i, i + MAX_EVENT_CLUSTERS) });
      return;
    }
    if ('clusterIds' in event && event.clusterIds.length === 0) return;
    this.deliver(event, 'local');
    try {
      await this.redis.client.publish(this.channel, JSON.stringify({ ...event, origin: this.origin }));
    } catch (err) {
      this.logger.warn(
        {
          err,
          event: event.type,
          ...('appId' in event
            ? { appId: event.appId }
            : 'clusterId' in event
              ? { clusterId: event.clusterId }
              : { clusters: event.clusterIds.length }),
        },
        'could not publish a cluster event; other replicas catch up on their next sweep',
      );
    }
  }

  /**
   * `source` says where the event came from: `local` events were published by this process after
   * its own commit; `redis` ones may come from anyone who can write to Redis and are hints only.
   */
  on(listener: (event: ClusterEvent, source: EventSource) => void): () => void {
    const safe = (event: ClusterEvent, source: EventSource) => {
      try {
        listener(event, source);
      } catch (err) {
        this.logger.error({ err, event: event.type }, 'a cluster event listener failed');
      }
    };
    this.local.on('event', safe);
    return () => this.local.off('event', safe);
  }

  private deliver(event: ClusterEvent, source: EventSource): void {
    this.local.emit('event', event, source);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.subscriber?.quit().catch(() => this.subscriber?.disconnect());
  }
}

@Module({ imports: [RedisModule], providers: [ClusterEvents, AgentPresence], exports: [ClusterEvents, AgentPresence] })
export class EventsModule {}
