import { Inject, Injectable, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import type { Request, Response } from 'express';
import { PinoLogger } from 'nestjs-pino';
import { DeliveryError, DeliveryErrorCode } from '../delivery/delivery.errors.js';
import { ClusterEvents, type ClusterEvent } from '../events/cluster-events.js';
import { MetricsService } from '../metrics/metrics.service.js';
import type { FleetDeliveryView, PublicationSummary } from './publications.dto.js';
import { PublicationsService } from './publications.service.js';

/** Event streams one replica holds open at once, whoever asks; beyond it 503 event_streams_full. */
export const EVENT_STREAMS_PER_REPLICA = 1_000;
/** Event streams one API token may hold open at once, per replica; beyond it 429 too_many_event_streams. */
export const EVENT_STREAMS_PER_TOKEN = 20;
/** Events arriving within this window after the first are read and sent together. */
export const COALESCE_MS = 250;
/**
 * The app's summary (a count over all its clusters: tens of milliseconds of PostgreSQL at 10,000)
 * is read at most this often per app; messages in between carry the last one read, and once the
 * changes stop a last message (no rows) brings the summary up to date. Read with every 250 ms
 * batch, it was the larger part of PostgreSQL's work during a 10,000-cluster rotation.
 */
export const SUMMARY_EVERY_MS = 1_000;
/** Rows per `deliveries` message at most; more are split over several messages. */
export const ITEMS_PER_MESSAGE = 500;
/** A comment line this often keeps proxies and load balancers from timing the stream out. */
export const HEARTBEAT_MS = 15_000;
/**
 * A stream ends after this long; the client reconnects (EventSource does by itself, after the
 * `retry` the stream announces) and is authenticated again, so a revoked token or an ended
 * console session stops receiving within this bound.
 */
export const STREAM_LIFETIME_MS = 5 * 60_000;
/** What EventSource waits before reconnecting (the stream's `retry:` field). */
const RECONNECT_MS = 2_000;
/** Changed clusters read per statement. */
const READ_CHUNK = 5_000;
/** A client this far behind (bytes buffered in the socket) is cut off; it reconnects and refetches. */
const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;
/** More changed clusters than this pending for one app: the rows are dropped and a `reset` sent instead. */
const MAX_PENDING = 20_000;
/** After a failed read (PostgreSQL away), try again this much later, with a `reset`. */
const RETRY_MS = 1_000;
const REFUSED_RETRY_AFTER_S = 5;

interface Stream {
  res: Response;
  tokenId: string;
  hub: Hub;
  close(): void;
}

/** Everything this replica streams about one app: its open streams and what changed since the last send. */
interface Hub {
  appId: string;
  streams: Set<Stream>;
  pending: Set<string>;
  reset: boolean;
  timer: NodeJS.Timeout | undefined;
  /** When `timer` fires (a summary-only flush can be due later than new rows are). */
  timerAt: number;
  flushing: boolean;
  /** The last summary read, and when: reused until SUMMARY_EVERY_MS has passed. */
  summary: { value: PublicationSummary; at: number } | undefined;
  /** A message went out with a summary older than its rows: a fresh one is owed. */
  summaryOwed: boolean;
}

/**
 * Server-Sent Events of an app's deliveries (`GET …/apps/{app}/deliveries/events`). Every stream
 * hangs off one listener on the cluster events (the Redis subscription the gRPC side and the
 * publication long-polls share), grouped per app: `status` and `desired` events (and
 * `access-changed`) add their clusters to each app's pending set; 250 ms after the first, the
 * rows of those clusters that belong to the app are read from PostgreSQL in one statement (per
 * 5,000 clusters), once for all of the app's streams, and sent in messages of at most 500 rows
 * with the app's summary (read at most once a second, see SUMMARY_EVERY_MS). `placement-changed` of the app sends `reset` instead:
 * membership moved, possibly for thousands of clusters, and the client refetches its page.
 * Events are hints; the rows sent are PostgreSQL's.
 */
@Injectable()
export class DeliveryStreams implements OnModuleInit, OnModuleDestroy {
  private readonly hubs = new Map<string, Hub>();
  private readonly perToken = new Map<string, number>();
  private total = 0;
  private unsubscribe: (() => void) | undefined;

  constructor(
    @Inject(ClusterEvents) private readonly events: ClusterEvents,
    @Inject(PublicationsService) private readonly publications: PublicationsService,
    @Inject(MetricsService) private readonly metrics: MetricsService,
    @Inject(PinoLogger) private readonly logger: PinoLogger,
  ) {
    logger.setContext('delivery-streams');
  }

  onModuleInit(): void {
    this.unsubscribe = this.events.on((e) => this.onEvent(e));
  }

  onModuleDestroy(): void {
    this.unsubscribe?.();
    // Open streams would hold the HTTP server's shutdown until they end by themselves.
    for (const hub of [...this.hubs.values()]) for (const s of [...hub.streams]) s.close();
  }

  /** Streams open now (metrics, tests). */
  get open(): number {
    return this.total;
  }

  /**
   * Takes a slot (or refuses: 429 for the token, 503 for the replica; nothing written yet, so
   * the refusal is an ordinary problem+json answer), then turns `res` into the app's event
   * stream: headers, `retry`, `ready`, then `deliveries` / `reset` messages and heartbeats until
   * the client hangs up, the stream's lifetime ends, or the server shuts down.
   */
  attach(tokenId: string, appId: string, req: Request, res: Response): void {
    const mine = this.perToken.get(tokenId) ?? 0;
    if (mine >= EVENT_STREAMS_PER_TOKEN) {
      throw new DeliveryError(
        DeliveryErrorCode.TooManyEventStreams,
        `at most ${EVENT_STREAMS_PER_TOKEN} event streams per API token; close one first`,
        { retryAfterSeconds: REFUSED_RETRY_AFTER_S },
      );
    }
    if (this.total >= EVENT_STREAMS_PER_REPLICA) {
      throw new DeliveryError(DeliveryErrorCode.EventStreamsFull, 'this server holds as many event streams as it may; retry shortly', {
        retryAfterSeconds: REFUSED_RETRY_AFTER_S,
      });
    }
    this.perToken.set(tokenId, mine + 1);
    this.total++;
    this.metrics.deliveryEventStreams.set(this.total);

    let hub = this.hubs.get(appId);
    if (!hub) {
      hub = {
        appId,
        streams: new Set(),
        pending: new Set(),
        reset: false,
        timer: undefined,
        timerAt: 0,
        flushing: false,
        summary: undefined,
        summaryOwed: false,
      };
      this.hubs.set(appId, hub);
    }
    let closed = false;
    const heartbeat = setInterval(() => this.write(stream, ': ping\n\n'), HEARTBEAT_MS);
    const lifetime = setTimeout(() => stream.close(), STREAM_LIFETIME_MS);
    const stream: Stream = {
      res,
      tokenId,
      hub,
      close: () => {
        if (closed) return;
        closed = true;
        clearInterval(heartbeat);
        clearTimeout(lifetime);
        res.off('close', onClose);
        this.detach(stream);
        if (!res.writableEnded) res.end();
      },
    };
    const onClose = () => stream.close();
    res.on('close', onClose);
    hub.streams.add(stream);

    req.socket.setNoDelay(true);
    res.status(200);
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.setHeader('Cache-Control', 'no-cache, no-transform');
    res.setHeader('Connection', 'keep-alive');
    res.setHeader('X-Accel-Buffering', 'no');
    res.flushHeaders();
    this.write(stream, `retry: ${RECONNECT_MS}\n\nevent: ready\ndata: {}\n\n`);
  }

  private detach(stream: Stream): void {
    const hub = stream.hub;
    if (!hub.streams.delete(stream)) return;
    this.total--;
    this.metrics.deliveryEventStreams.set(this.total);
    const left = (this.perToken.get(stream.tokenId) ?? 1) - 1;
    if (left > 0) this.perToken.set(stream.tokenId, left);
    else this.perToken.delete(stream.tokenId);
    if (hub.streams.size === 0) {
      clearTimeout(hub.timer);
      hub.timer = undefined;
      hub.pending.clear();
      this.hubs.delete(hub.appId);
    }
  }

  private write(stream: Stream, chunk: string): void {
    const { res } = stream;
    if (res.writableEnded || res.destroyed) return;
    // A client that does not read would make the server buffer without bound: cut it off.
    if (res.writableLength > MAX_BUFFERED_BYTES) {
      this.logger.warn({ appId: stream.hub.appId, buffered: res.writableLength }, 'event stream client too slow; closing its stream');
      stream.close();
      return;
    }
    res.write(chunk);
  }

  private onEvent(e: ClusterEvent): void {
    if (this.hubs.size === 0) return;
    if (e.type === 'placement-changed') {
      const hub = this.hubs.get(e.appId);
      if (hub) {
        hub.reset = true;
        this.schedule(hub);
      }
      return;
    }
    const ids = e.type === 'access-changed' ? [e.clusterId] : e.clusterIds;
    // Which of them concern an app is asked of PostgreSQL at send time (the read joins the app's entries).
    for (const hub of this.hubs.values()) {
      if (hub.reset) continue; // a reset is coming: the client refetches everything anyway
      for (const id of ids) hub.pending.add(id);
      if (hub.pending.size > MAX_PENDING) {
        hub.pending.clear();
        hub.reset = true;
      }
      this.schedule(hub);
    }
  }

  private schedule(hub: Hub, delay = COALESCE_MS): void {
    if (hub.flushing || this.hubs.get(hub.appId) !== hub) return;
    const at = Date.now() + delay;
    if (hub.timer) {
      if (hub.timerAt <= at) return;
      clearTimeout(hub.timer); // new rows do not wait for a later summary-only flush
    }
    hub.timerAt = at;
    hub.timer = setTimeout(() => void this.flush(hub), delay);
  }

  private async flush(hub: Hub): Promise<void> {
    hub.timer = undefined;
    hub.flushing = true;
    const ids = [...hub.pending];
    const reset = hub.reset;
    hub.pending.clear();
    hub.reset = false;
    let retry = false;
    try {
      if (reset) {
        const summary = await this.freshSummary(hub);
        this.broadcast(hub, `event: reset\ndata: ${JSON.stringify({ summary })}\n\n`);
      } else {
        const items = await this.rows(hub.appId, ids);
        if (items.length === 0 && !hub.summaryOwed) return; // nothing of this app changed
        const due = !hub.summary || Date.now() - hub.summary.at >= SUMMARY_EVERY_MS;
        if (items.length === 0 && !due) return; // only the summary is owed, and it is not time yet: the timer comes back
        const summary = due ? await this.freshSummary(hub) : hub.summary!.value;
        if (!due) hub.summaryOwed = true;
        for (let i = 0; i < Math.max(1, items.length); i += ITEMS_PER_MESSAGE) {
          this.broadcast(hub, `event: deliveries\ndata: ${JSON.stringify({ items: items.slice(i, i + ITEMS_PER_MESSAGE), summary })}\n\n`);
        }
      }
    } catch (err) {
      this.logger.warn({ err, appId: hub.appId }, 'could not read changed deliveries; streams get a reset once PostgreSQL answers');
      hub.reset = true;
      retry = true;
    } finally {
      hub.flushing = false;
      if (hub.reset || hub.pending.size > 0) this.schedule(hub, retry ? RETRY_MS : COALESCE_MS);
      else if (hub.summaryOwed) this.schedule(hub, Math.max(0, hub.summary!.at + SUMMARY_EVERY_MS - Date.now()));
    }
  }

  /** The current rows of those of `ids` that belong to the app (5,000 clusters per statement). */
  private async rows(appId: string, ids: string[]): Promise<FleetDeliveryView[]> {
    const items: FleetDeliveryView[] = [];
    for (let i = 0; i < ids.length; i += READ_CHUNK)
      items.push(...(await this.publications.deliveriesOf(appId, ids.slice(i, i + READ_CHUNK))));
    return items;
  }

  /** The app's summary, read now (and remembered: see SUMMARY_EVERY_MS). */
  private async freshSummary(hub: Hub): Promise<PublicationSummary> {
    const at = Date.now();
    const value = await this.publications.summaryOf(hub.appId);
    hub.summary = { value, at };
    hub.summaryOwed = false;
    return value;
  }

  private broadcast(hub: Hub, message: string): void {
    for (const s of [...hub.streams]) this.write(s, message);
  }
}
