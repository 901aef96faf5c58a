import 'reflect-metadata';
import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import type { Request, Response } from 'express';
import type { PinoLogger } from 'nestjs-pino';
import type { ClusterEvent, ClusterEvents } from '../events/cluster-events.js';
import type { MetricsService } from '../metrics/metrics.service.js';
import { COALESCE_MS, DeliveryStreams, EVENT_STREAMS_PER_REPLICA, ITEMS_PER_MESSAGE, SUMMARY_EVERY_MS } from './delivery-streams.js';
import type { FleetDeliveryView } from './publications.dto.js';
import type { PublicationsService } from './publications.service.js';

const APP = '00000000-0000-4000-8000-000000000001';
const summary = { clusters: 0, pending: 0, provisioned: 0, failed: 0, deprovisioning: 0, deprovisioned: 0, converged: true };

/** An express Response as far as the stream uses one; `out` is everything written. */
class FakeResponse extends EventEmitter {
  out = '';
  headers: Record<string, string> = {};
  statusCode = 0;
  writableEnded = false;
  destroyed = false;
  writableLength = 0;
  status(code: number) {
    this.statusCode = code;
    return this;
  }
  setHeader(k: string, v: string) {
    this.headers[k.toLowerCase()] = v;
  }
  flushHeaders() {}
  write(chunk: string) {
    this.out += chunk;
    return true;
  }
  end() {
    this.writableEnded = true;
    this.emit('close');
  }
  /** The client hangs up. */
  hangUp() {
    this.destroyed = true;
    this.emit('close');
  }
  messages(event: string): any[] {
    return this.out
      .split('\n\n')
      .filter((b) => b.startsWith(`event: ${event}\n`))
      .map((b) => JSON.parse(b.split('\n')[1]!.slice('data: '.length)));
  }
}

function setup() {
  let listener: ((e: ClusterEvent) => void) | undefined;
  const events = { on: (l: (e: ClusterEvent) => void) => ((listener = l), () => (listener = undefined)) } as unknown as ClusterEvents;
  const reads: string[][] = [];
  const summaries = { read: 0 };
  const publications = {
    // Rows of clusters named `other…` belong to another app.
    deliveriesOf: (_appId: string, ids: string[]) => {
      reads.push(ids);
      return Promise.resolve(ids.filter((id) => !id.startsWith('other')).map((id) => ({ cluster: id }) as unknown as FleetDeliveryView));
    },
    summaryOf: () => Promise.resolve({ ...summary, clusters: ++summaries.read }),
  } as unknown as PublicationsService;
  const metrics = { deliveryEventStreams: { set: () => undefined } } as unknown as MetricsService;
  const logger = { setContext: () => undefined, warn: () => undefined } as unknown as PinoLogger;
  const streams = new DeliveryStreams(events, publications, metrics, logger);
  streams.onModuleInit();
  const req = { socket: { setNoDelay: () => undefined } } as unknown as Request;
  const open = (token = 't1', app = APP) => {
    const res = new FakeResponse();
    streams.attach(token, app, req, res as unknown as Response);
    return res;
  };
  return { streams, open, emit: (e: ClusterEvent) => listener!(e), reads, summaries };
}

const ids = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `c${from + i}`);

describe('DeliveryStreams', () => {
  beforeEach(() => {
    jest.useFakeTimers();
  });
  afterEach(() => {
    jest.useRealTimers();
  });

  it('starts with the headers, retry and ready', () => {
    const { open } = setup();
    const res = open();
    expect(res.statusCode).toBe(200);
    expect(res.headers).toMatchObject({
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
    });
    expect(res.out).toBe('retry: 2000\n\nevent: ready\ndata: {}\n\n');
  });

  it('coalesces a burst into one read per app and splits the rows into messages of at most 500', async () => {
    const { open, emit, reads } = setup();
    const [x, y] = [open('t1'), open('t2')];
    for (let i = 0; i < 12; i++) emit({ type: 'status', clusterIds: ids(100, i * 100) });
    emit({ type: 'desired', clusterIds: ids(100) }); // the same clusters again
    await jest.advanceTimersByTimeAsync(COALESCE_MS - 1);
    expect(reads).toEqual([]);
    await jest.advanceTimersByTimeAsync(1);
    expect(reads).toHaveLength(1); // once for both streams
    expect(reads[0]).toHaveLength(1_200);
    for (const res of [x, y]) {
      const sent = res.messages('deliveries');
      expect(sent.map((m) => m.items.length)).toEqual([ITEMS_PER_MESSAGE, ITEMS_PER_MESSAGE, 200]);
      expect(sent.every((m) => m.summary.converged)).toBe(true);
    }
  });

  it('reads the summary at most once a second, and brings it up to date once the changes stop', async () => {
    const { open, emit, summaries } = setup();
    const res = open();
    // Changes every 250 ms for 2 s (a rollout): eight batches of rows.
    for (let i = 0; i < 8; i++) {
      emit({ type: 'status', clusterIds: [`c${i}`] });
      await jest.advanceTimersByTimeAsync(COALESCE_MS);
    }
    const during = res.messages('deliveries');
    expect(during.map((m) => m.items.length)).toEqual([1, 1, 1, 1, 1, 1, 1, 1]);
    expect(summaries.read).toBeLessThanOrEqual(Math.ceil((8 * COALESCE_MS) / SUMMARY_EVERY_MS) + 1);
    // Events about other apps' clusters send nothing and read no summary.
    const before = summaries.read;
    await jest.advanceTimersByTimeAsync(SUMMARY_EVERY_MS);
    const settled = res.messages('deliveries');
    // The last message carries no rows, only the summary as it is now.
    expect(settled.at(-1)).toEqual({ items: [], summary: expect.objectContaining({ clusters: summaries.read }) });
    expect(summaries.read).toBe(before + 1);
    emit({ type: 'status', clusterIds: ['other-1'] });
    await jest.advanceTimersByTimeAsync(3 * SUMMARY_EVERY_MS);
    expect(res.messages('deliveries')).toHaveLength(settled.length);
    expect(summaries.read).toBe(before + 1);
  });

  it('sends reset on placement-changed of its app only', async () => {
    const { open, emit } = setup();
    const mine = open();
    const other = open('t1', '00000000-0000-4000-8000-000000000002');
    emit({ type: 'placement-changed', appId: APP });
    await jest.advanceTimersByTimeAsync(COALESCE_MS);
    expect(mine.messages('reset')).toEqual([{ summary: { ...summary, clusters: 1 } }]);
    expect(other.messages('reset')).toEqual([]);
  });

  it('frees the slot when the client hangs up, and reads nothing for a stream that is gone', async () => {
    const { streams, open, emit, reads } = setup();
    const res = open();
    expect(streams.open).toBe(1);
    res.hangUp();
    expect(streams.open).toBe(0);
    emit({ type: 'status', clusterIds: ids(3) });
    await jest.advanceTimersByTimeAsync(COALESCE_MS * 2);
    expect(reads).toEqual([]);
    expect(jest.getTimerCount()).toBe(0); // no heartbeat, lifetime or flush timer left behind
  });

  it(`refuses stream ${EVENT_STREAMS_PER_REPLICA + 1} on a replica with 503 event_streams_full`, () => {
    const { streams, open } = setup();
    for (let i = 0; i < EVENT_STREAMS_PER_REPLICA; i++) open(`token-${i % 100}`);
    expect(() => open('someone-else')).toThrow(expect.objectContaining({ code: 'event_streams_full', retryAfterSeconds: 5 }));
    streams.onModuleDestroy(); // shutdown ends them all
    expect(streams.open).toBe(0);
    expect(jest.getTimerCount()).toBe(0);
  });
});
