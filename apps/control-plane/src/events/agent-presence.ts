import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { RuntimeConfig } from '../config/runtime-config.js';
import { RedisConnection } from '../redis/redis.module.js';

/** How often each replica marks again every cluster whose agent holds a Sync stream to it. */
export const PRESENCE_REFRESH_MS = 15_000;
/**
 * A cluster marked within this long counts as connected: a replica that died without saying so
 * stops counting after two missed refreshes, and a control-plane restart (agents are back within
 * seconds) does not show the fleet disconnected.
 */
export const PRESENCE_TTL_MS = 45_000;
/** Opened and closed streams are written together, at most this often. */
const FLUSH_MS = 1_000;
/** Members per ZADD / ZREM / ZMSCORE. */
const CHUNK = 1_000;

/**
 * Which clusters' agents hold a Sync stream to some control-plane replica now: one Redis sorted
 * set shared by the replicas, member the cluster id, score the last time a replica marked it
 * (ms). Each replica marks its clusters when their stream opens and every PRESENCE_REFRESH_MS,
 * and removes a cluster when its last stream on that replica closes (an agent that moved to
 * another replica in the meantime shows connected again at that replica's next refresh).
 * Cluster ids and times only; the truth of what a cluster holds stays in PostgreSQL. Redis away:
 * presence is unknown (null), nothing fails.
 */
@Injectable()
export class AgentPresence implements OnModuleDestroy {
  private readonly key: string;
  private readonly opened = new Set<string>();
  private readonly closed = new Set<string>();
  private flushTimer: NodeJS.Timeout | undefined;
  private refresher: NodeJS.Timeout | undefined;

  constructor(
    @Inject(RuntimeConfig) config: RuntimeConfig,
    @Inject(RedisConnection) private readonly redis: RedisConnection,
    @Inject(PinoLogger) private readonly logger: PinoLogger,
  ) {
    this.key = `${config.redis.prefix}:agent-presence`;
    logger.setContext('agent-presence');
  }

  /** Marks what `held()` returns every PRESENCE_REFRESH_MS (the replica's open streams). */
  track(held: () => Iterable<string>): void {
    clearInterval(this.refresher);
    this.refresher = setInterval(() => void this.write([...held()], []), PRESENCE_REFRESH_MS).unref();
  }

  /** A stream of this cluster opened on this replica. */
  streamOpened(clusterId: string): void {
    this.closed.delete(clusterId);
    this.opened.add(clusterId);
    this.schedule();
  }

  /** The last stream of this cluster on this replica closed. */
  streamClosed(clusterId: string): void {
    this.opened.delete(clusterId);
    this.closed.add(clusterId);
    this.schedule();
  }

  /**
   * For each id, whether its agent is connected (marked within PRESENCE_TTL_MS); undefined when
   * Redis does not answer.
   */
  async connected(clusterIds: string[]): Promise<Map<string, boolean> | undefined> {
    const out = new Map<string, boolean>();
    const since = Date.now() - PRESENCE_TTL_MS;
    try {
      for (let i = 0; i < clusterIds.length; i += CHUNK) {
        const ids = clusterIds.slice(i, i + CHUNK);
        if (ids.length === 0) continue;
        const scores = await this.redis.client.zmscore(this.key, ...ids);
        ids.forEach((id, j) => out.set(id, scores[j] !== null && Number(scores[j]) >= since));
      }
    } catch {
      return undefined;
    }
    return out;
  }

  /** On shutdown the pending marks are written; nothing is removed (the agents reconnect elsewhere within seconds). */
  async onModuleDestroy(): Promise<void> {
    clearInterval(this.refresher);
    clearTimeout(this.flushTimer);
    this.closed.clear();
    await this.flush();
  }

  private schedule(): void {
    this.flushTimer ??= setTimeout(() => void this.flush(), FLUSH_MS);
  }

  private async flush(): Promise<void> {
    this.flushTimer = undefined;
    const opened = [...this.opened];
    const closed = [...this.closed];
    this.opened.clear();
    this.closed.clear();
    await this.write(opened, closed);
  }

  private async write(marked: string[], removed: string[]): Promise<void> {
    if (marked.length === 0 && removed.length === 0) return;
    const now = Date.now();
    const multi = this.redis.client.multi();
    for (let i = 0; i < marked.length; i += CHUNK) multi.zadd(this.key, ...marked.slice(i, i + CHUNK).flatMap((id) => [now, id]));
    for (let i = 0; i < removed.length; i += CHUNK) multi.zrem(this.key, ...removed.slice(i, i + CHUNK));
    // Deleted clusters and replicas that died leave members behind: trimmed here, by age.
    multi.zremrangebyscore(this.key, '-inf', now - PRESENCE_TTL_MS);
    try {
      await multi.exec();
    } catch (err) {
      this.logger.debug({ err }, 'could not record agent presence; the next refresh does');
    }
  }
}
