import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { ApiClient } from '../harness/api-client.js';
import type { ControlPlaneProcess } from '../harness/control-plane-process.js';
import { eventually, holds } from '../harness/eventually.js';
import { metricValue } from '../harness/metrics.js';
import { startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import { syncedTestAgent, type TestAgent, type TestSyncStream } from '../harness/test-agent.js';
import { uniqueName } from '../harness/test-env.js';

// The fleet view's REST pieces on two replicas sharing PostgreSQL and Redis: the paged and
// filtered deliveries list, its Server-Sent Events stream (fed by an agent's reports through the
// other replica), and publish previews that match what publish then does.

const EVENT_STREAMS_PER_TOKEN = 20;
const SECRET_VALUE = 'fleet-view-value-never-shown';

let a: RunningControlPlane;
let b: { cp: ControlPlaneProcess; admin: ApiClient };
let viewer: ApiClient;
let outsider: ApiClient;
let agents: Array<{ agent: TestAgent; watch: TestSyncStream; name: string }> = [];
const project = uniqueName('fleet');
const other = uniqueName('other');
const base = `/projects/${project}/apps/checkout`;
// Registered without agents: 6 in eu, 4 in us; 2 lab clusters outside the project's cluster selector.
const stores = Array.from({ length: 10 }, (_, i) => `${project}-store-${String(i).padStart(2, '0')}`);
const region = (i: number) => (i < 6 ? 'eu' : 'us');
const labs = [`${project}-lab-0`, `${project}-lab-1`];
const agentNames = [`${project}-agent-a`, `${project}-agent-b`];

interface Message {
  event: string;
  data: any;
}

/** An SSE client over fetch: the parsed messages as they come, and a way to hang up. */
async function openEvents(api: ApiClient, path = `${base}/deliveries/events`) {
  const hangUp = new AbortController();
  const res = await fetch(`${api.baseUrl}/api/v1${path}`, {
    headers: { Authorization: `Bearer ${api.token}`, Accept: 'text/event-stream' },
    signal: hangUp.signal,
  });
  const messages: Message[] = [];
  let raw = '';
  const read = (async () => {
    if (!res.ok || !res.body) return;
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of res.body) {
        const text = decoder.decode(chunk as Uint8Array, { stream: true });
        raw += text;
        buffer += text;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
          }
          if (data.length) messages.push({ event, data: JSON.parse(data.join('\n')) });
        }
      }
    } catch {
      // hung up
    }
  })();
  return {
    res,
    messages,
    raw: () => raw,
    hangUp: async () => {
      hangUp.abort();
      await read;
    },
  };
}

async function allPages(api: ApiClient, query: string, limit: number): Promise<{ names: string[]; pages: number; last: any }> {
  const names: string[] = [];
  let after: string | null = null;
  let pages = 0;
  let last: any;
  do {
    const r: { status: number; body: any } = await api.get(`${base}/deliveries?limit=${limit}${query}${after ? `&after=${after}` : ''}`);
    expect(r.status).toBe(200);
    expect(r.body.items.length).toBeLessThanOrEqual(limit);
    names.push(...r.body.items.map((d: any) => d.cluster));
    after = r.body.next;
    last = r.body;
    pages++;
  } while (after !== null && pages < 50);
  return { names, pages, last };
}

beforeAll(async () => {
  a = await startControlPlane();
  b = await a.startReplica();
  for (const p of [project, other]) expect((await a.admin.post('/projects', { name: p })).status).toBe(201);
  expect(
    (
      await a.admin.put(`/projects/${project}/cluster-selector`, {
        selector: { matchExpressions: [{ key: 'tier', operator: 'In', values: ['store'] }] },
      })
    ).status,
  ).toBe(204);
  expect((await a.admin.put(`/projects/${project}/namespaces`, { namespaces: [`${project}-shop`] })).status).toBe(200);
  expect(
    (await a.admin.post(`/projects/${project}/apps`, { name: 'checkout', namespace: `${project}-shop`, deliveryMode: 'env' })).status,
  ).toBe(201);
  expect((await a.admin.post(`${base}/secrets`, { name: 'checkout-env', data: { K: SECRET_VALUE } })).status).toBe(201);
  for (const [i, name] of stores.entries())
    expect((await a.admin.post('/clusters', { name, labels: { tier: 'store', region: region(i) } })).status).toBe(201);
  for (const name of labs) expect((await a.admin.post('/clusters', { name, labels: { tier: 'lab', region: 'eu' } })).status).toBe(201);
  for (const name of agentNames) {
    const { agent, watch } = await syncedTestAgent(a.admin, a.cp.grpcAddress, name, { tier: 'store', region: 'eu', agents: 'yes' });
    agents.push({ agent, watch, name });
  }
  viewer = a.admin.as((await a.admin.post('/tokens', { name: uniqueName('viewer'), role: 'viewer', project })).body.token);
  outsider = a.admin.as((await a.admin.post('/tokens', { name: uniqueName('outsider'), role: 'operator', project: other })).body.token);
}, 120_000);

afterAll(async () => {
  for (const { agent, watch } of agents) {
    watch.cancel();
    agent.close();
  }
  agents = [];
  await a?.stop();
});

describe('publish preview', () => {
  it('reports unknown and refused clusters where publish refuses, and reaches exactly what publish then delivers to', async () => {
    const eu = { matchLabels: { region: 'eu' } };
    const bad = await a.admin.post(`${base}/publish/preview`, { clusters: [labs[0], `${project}-nope`], selector: eu });
    expect(bad.status).toBe(200);
    // eu stores and both agents; lab-0 (named) and lab-1 (matched) are outside the project's selector.
    const euNames = [...stores.filter((_, i) => region(i) === 'eu'), ...agentNames].sort();
    expect(bad.body).toEqual({ count: euNames.length, clusters: euNames, unknown: [`${project}-nope`], notAllowed: 2 });
    // Publish refuses the same request for the same reasons.
    expect((await a.admin.post(`${base}/publish`, { clusters: [`${project}-nope`], selector: eu })).body.code).toBe('cluster_not_found');
    expect((await a.admin.post(`${base}/publish`, { clusters: [labs[0]], selector: eu })).body.code).toBe('cluster_not_allowed');
    expect((await a.admin.post(`${base}/publish/preview`, {})).body.code).toBe('target_required');

    // A viewer may not publish, nor preview; the pipeline permission is what both need.
    const denied = await viewer.post(`${base}/publish/preview`, { selector: eu });
    expect([denied.status, denied.body.code]).toEqual([403, 'forbidden']);
    expect(denied.headers.get('content-type')).toContain('application/problem+json');

    const preview = await a.admin.post(`${base}/publish/preview`, { selector: eu });
    expect(preview.body).toMatchObject({ count: euNames.length, clusters: euNames, unknown: [], notAllowed: 2 });
    // Nothing was written: the app is published nowhere yet.
    expect((await a.admin.get(`${base}/deliveries`)).body).toMatchObject({ items: [], next: null, summary: { clusters: 0 } });
    expect((await a.admin.get(`${base}/placement`)).body).toEqual({ clusters: [], selectors: [], excluded: [], updatedAt: null });

    const published = await a.admin.post(`${base}/publish`, { selector: eu });
    expect(published.status).toBe(200);
    const listed = await a.admin.get(`${base}/deliveries`);
    expect(listed.body.items.map((d: any) => d.cluster)).toEqual(preview.body.clusters);
    expect(listed.body.summary.clusters).toBe(preview.body.count);

    // A second preview of the whole store tier counts what is already published too.
    const all = await a.admin.post(`${base}/publish/preview`, { selector: { matchLabels: { tier: 'store' } } });
    expect(all.body).toMatchObject({ count: stores.length + agentNames.length, unknown: [], notAllowed: 0 });
    expect((await a.admin.post(`${base}/publish`, { selector: { matchLabels: { tier: 'store' } } })).status).toBe(200);
    expect((await a.admin.get(`${base}/deliveries`)).body.summary.clusters).toBe(all.body.count);
    // Where it is published, without a row per cluster: both selectors, as given.
    const placement = (await a.admin.get(`${base}/placement`)).body;
    expect(placement).toMatchObject({ clusters: [], selectors: [eu, { matchLabels: { tier: 'store' } }], excluded: [] });
    expect(Date.parse(placement.updatedAt)).toBeGreaterThan(Date.now() - 60_000);

    // Previews change nothing, so the audit log has no record of them (publish's are there).
    await eventually('the publish outcome recorded', async () => {
      const items = (await a.admin.get('/audit?limit=100')).body.items as any[];
      return holds(items.some((e) => e.action === 'app.publish' && e.outcome === 'success'));
    });
    const audit = (await a.admin.get('/audit?limit=500')).body.items as any[];
    expect(audit.filter((e) => String(e.path).endsWith('/publish/preview'))).toEqual([]);
  }, 60_000);
});

describe('the deliveries list', () => {
  it('pages by cluster name and filters by state, name and labels, server-side', async () => {
    for (const { agent } of agents) await agent.sync();
    const total = stores.length + agentNames.length;
    await eventually('both agents provisioned', async () => {
      const r = await a.admin.get(`${base}/deliveries?state=provisioned`);
      return holds(r.body.items.length === 2);
    });

    const everything = [...stores, ...agentNames].sort();
    const paged = await allPages(viewer, '', 5);
    expect(paged.names).toEqual(everything);
    expect(paged.pages).toBe(Math.ceil(total / 5));
    expect(paged.last.summary).toEqual({
      clusters: total,
      pending: stores.length,
      provisioned: 2,
      failed: 0,
      deprovisioning: 0,
      deprovisioned: 0,
      converged: false,
    });

    const first = await a.admin.get(`${base}/deliveries?limit=3`);
    expect(first.body.next).toBe(everything[2]);
    const row = (await a.admin.get(`${base}/deliveries?name=${agentNames[0]!.toUpperCase()}`)).body.items;
    expect(row).toHaveLength(1);
    expect(row[0]).toMatchObject({
      cluster: agentNames[0],
      labels: { tier: 'store', region: 'eu', agents: 'yes' },
      state: 'provisioned',
      reason: null,
      agentVersion: 'test-agent/1',
      secrets: [{ name: 'checkout-env', version: 1, applied: true }],
    });
    expect(row[0].appliedGeneration).toBe(row[0].desiredGeneration);
    expect(typeof row[0].lastSeenAt).toBe('string');
    expect(typeof row[0].since).toBe('string');

    const pending = await allPages(a.admin, '&state=pending,failed', 4);
    expect(pending.names).toEqual([...stores].sort());
    const pendingRow = (await a.admin.get(`${base}/deliveries?name=store-00`)).body.items[0];
    expect(pendingRow).toMatchObject({ state: 'pending', lastSeenAt: null, agentVersion: null });
    expect(pendingRow.secrets).toEqual([{ name: 'checkout-env', version: 1, applied: false }]);

    const us = await allPages(a.admin, '&labels=region=us', 2);
    expect(us.names).toEqual(stores.filter((_, i) => region(i) === 'us'));
    expect(us.last.summary.clusters).toBe(total); // the summary is the whole app's
    const combined = await a.admin.get(`${base}/deliveries?labels=region=eu,agents=yes&state=provisioned&name=agent-b`);
    expect(combined.body.items.map((d: any) => d.cluster)).toEqual([agentNames[1]]);
    expect((await a.admin.get(`${base}/deliveries?state=deprovisioned`)).body.items).toEqual([]);

    for (const [query, code] of [
      ['state=done', 'invalid_state_filter'],
      ['state=pending,', 'invalid_state_filter'],
      ['labels=region', 'invalid_label_filter'],
      ['limit=501', 'invalid_limit'],
      ['after=NOT%20A%20NAME', 'invalid_cursor'],
      [`name=${'x'.repeat(254)}`, 'invalid_name_filter'],
    ] as const) {
      const r = await a.admin.get(`${base}/deliveries?${query}`);
      expect([query, r.status, r.body.code]).toEqual([query, 400, code]);
      expect(r.headers.get('content-type')).toContain('application/problem+json');
    }
    // Names, versions and generations only.
    expect(JSON.stringify(paged.last)).not.toContain(SECRET_VALUE);
  }, 60_000);

  it('is scoped like the publication: another project’s token and an unknown app get 404 problem+json', async () => {
    for (const path of [
      `${base}/deliveries`,
      `${base}/deliveries/events`,
      `${base}/placement`,
      `/projects/${project}/apps/nope/deliveries`,
    ]) {
      const api = path.includes('/nope/') ? a.admin : outsider;
      const r = await api.get(path);
      expect([path, r.status]).toEqual([path, 404]);
      expect(r.headers.get('content-type')).toContain('application/problem+json');
    }
    const unknown = await a.admin.get(`/projects/${project}/apps/nope/deliveries/events`, { Accept: 'text/event-stream' });
    expect([unknown.status, unknown.body.code]).toEqual([404, 'app_not_found']);
    expect(unknown.headers.get('content-type')).toContain('application/problem+json');
    expect((await a.admin.as(undefined).get(`${base}/deliveries/events`)).status).toBe(401);
  });
});

describe('the deliveries event stream', () => {
  it('sends ready, then the rows of the clusters an agent reported for, through the other replica', async () => {
    const stream = await openEvents(b.admin.as(viewer.token));
    try {
      expect(stream.res.status).toBe(200);
      expect(stream.res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
      expect(stream.res.headers.get('cache-control')).toBe('no-cache, no-transform');
      expect(stream.res.headers.get('x-accel-buffering')).toBe('no');
      await eventually('ready', () => holds(stream.messages[0]?.event === 'ready'), 5_000);
      expect(stream.messages[0]!.data).toEqual({});

      // A rotation through replica A: new snapshots, then the agents' reports, each an event.
      expect((await a.admin.put(`${base}/secrets/checkout-env`, { data: { K: `${SECRET_VALUE}-2` } })).status).toBe(200);
      for (const { agent } of agents) await agent.sync();
      const reported = Date.now();
      const row = await eventually(
        'both agents’ rows with version 2 applied',
        () => {
          const latest = new Map<string, any>();
          for (const m of stream.messages.filter((x) => x.event === 'deliveries')) for (const d of m.data.items) latest.set(d.cluster, d);
          const mine = agentNames.map((n) => latest.get(n));
          return holds(mine.every((d) => d?.state === 'provisioned' && d.secrets[0].version === 2 && d.secrets[0].applied)) && mine;
        },
        10_000,
      );
      process.stderr.write(`[fleet-deliveries] rows on the stream ${Date.now() - reported} ms after the reports\n`);
      expect(row[0]).toMatchObject({ cluster: agentNames[0], secrets: [{ name: 'checkout-env', version: 2, applied: true }] });
      const deliveries = stream.messages.filter((m) => m.event === 'deliveries');
      for (const m of deliveries) {
        expect(m.data.summary).toMatchObject({ clusters: stores.length + agentNames.length });
        expect(m.data.items.length).toBeLessThanOrEqual(500);
        // Only the app's clusters that changed: the agents (and any store whose build event named it).
        for (const d of m.data.items) expect([...stores, ...agentNames]).toContain(d.cluster);
      }
      // Coalesced: a handful of messages, not one per event.
      expect(deliveries.length).toBeLessThan(10);

      // Unpublishing a cluster moves membership: the client is told to refetch.
      expect((await a.admin.post(`${base}/unpublish`, { clusters: [stores[9]] })).status).toBe(200);
      await eventually('a reset', () => holds(stream.messages.some((m) => m.event === 'reset')), 5_000);
      const reset = stream.messages.find((m) => m.event === 'reset')!;
      expect(reset.data.summary.clusters).toBe(stores.length + agentNames.length - 1);
      expect((await a.admin.get(`${base}/placement`)).body.excluded).toEqual([stores[9]]);
      expect(stream.raw()).not.toContain(SECRET_VALUE);
    } finally {
      await stream.hangUp();
    }
  }, 60_000);

  it('frees a stream the client hangs up on; refuses one more than a token may hold with 429 problem+json', async () => {
    const onB = b.admin.as(viewer.token);
    const streams = () => metricValue(b.cp.url, 'sigil_delivery_event_streams');
    await eventually('no stream open', async () => holds((await streams()) === 0), 5_000);
    const open = [];
    for (let i = 0; i < EVENT_STREAMS_PER_TOKEN; i++) open.push(await openEvents(onB));
    try {
      expect(open.every((s) => s.res.status === 200)).toBe(true);
      expect(await streams()).toBe(EVENT_STREAMS_PER_TOKEN);
      const refused = await onB.get(`${base}/deliveries/events`);
      expect([refused.status, refused.body.code]).toEqual([429, 'too_many_event_streams']);
      expect(refused.headers.get('content-type')).toContain('application/problem+json');
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
      // Another token has slots of its own.
      const admins = await openEvents(b.admin);
      expect(admins.res.status).toBe(200);
      await admins.hangUp();
    } finally {
      for (const s of open) await s.hangUp();
    }
    await eventually('every stream freed', async () => holds((await streams()) === 0), 5_000);
    // And the token may open one again.
    const again = await openEvents(onB);
    expect(again.res.status).toBe(200);
    await again.hangUp();
    await eventually('freed again', async () => holds((await streams()) === 0), 5_000);
  }, 60_000);
});
