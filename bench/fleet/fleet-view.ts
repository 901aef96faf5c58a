// What the console's fleet view costs at fleet size: its REST pages (GET …/deliveries, paged
// and filtered at the server) and its live event stream (GET …/deliveries/events) while a
// change rolls out to every cluster.
import type { ApiClient } from '../../tests/harness/api-client.js';
import { now } from './sim-protocol.js';

export interface FleetViewPages {
  /** Median of 5, ms: the first page of 200, as the fleet view opens. */
  firstPageMs: number;
  /** A page deep in the list (after the cursor of the middle cluster). */
  deepPageMs: number;
  /** Filtered by state and name substring (matches nothing: the whole app is searched). */
  filteredMs: number;
  /** Filtered by a label. */
  labelledMs: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function timed(api: ApiClient, path: string): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = now();
    const r = await api.get(path);
    if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.text.slice(0, 200)}`);
    samples.push(now() - t0);
  }
  return median(samples);
}

export async function measureFleetPages(api: ApiClient, app: string, middleCluster: string): Promise<FleetViewPages> {
  const base = `${app}/deliveries?limit=200`;
  return {
    firstPageMs: await timed(api, base),
    deepPageMs: await timed(api, `${base}&after=${encodeURIComponent(middleCluster)}`),
    filteredMs: await timed(api, `${base}&state=failed,pending&name=nomatch`),
    labelledMs: await timed(api, `${base}&labels=fleet=bench`),
  };
}

export interface FleetViewStream {
  messages: number;
  rows: number;
  /** Clusters whose row arrived showing `done` (e.g. the rotated version applied). */
  clustersDone: number;
  /** ms from `start()` to the event that completed the last cluster, or undefined. */
  lastDoneMs: number | undefined;
  /** The largest message, bytes. */
  largestMessageBytes: number;
}

interface Row {
  cluster: string;
  state: string;
  secrets: { name: string; version: number; applied: boolean }[];
}

/**
 * Holds the fleet view's event stream open like a browser and counts what arrives. `done` says
 * when a row shows the change applied.
 */
export async function watchFleetEvents(
  api: ApiClient,
  app: string,
  done: (row: Row) => boolean,
): Promise<{ start: () => void; snapshot: () => FleetViewStream; stop: () => FleetViewStream }> {
  const hangUp = new AbortController();
  const res = await fetch(`${api.baseUrl}/api/v1${app}/deliveries/events`, {
    headers: { Authorization: `Bearer ${api.token}`, Accept: 'text/event-stream' },
    signal: hangUp.signal,
  });
  if (res.status !== 200 || !res.body) throw new Error(`event stream: ${res.status}`);
  const result: FleetViewStream = { messages: 0, rows: 0, clustersDone: 0, lastDoneMs: undefined, largestMessageBytes: 0 };
  const finished = new Set<string>();
  let t0 = now();
  let buffer = '';
  const decoder = new TextDecoder();
  void (async () => {
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const message = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (!message.startsWith('event: deliveries')) continue;
          const data = message
            .split('\n')
            .filter((l) => l.startsWith('data:'))
            .map((l) => l.slice(5).trimStart())
            .join('\n');
          result.messages++;
          result.largestMessageBytes = Math.max(result.largestMessageBytes, message.length);
          const { items } = JSON.parse(data) as { items: Row[] };
          result.rows += items.length;
          for (const row of items)
            if (!finished.has(row.cluster) && done(row)) {
              finished.add(row.cluster);
              result.clustersDone = finished.size;
              result.lastDoneMs = now() - t0;
            }
        }
      }
    } catch {
      // hung up
    }
  })();
  return {
    start() {
      t0 = now();
    },
    snapshot: () => ({ ...result }),
    stop() {
      hangUp.abort();
      return { ...result };
    },
  };
}
