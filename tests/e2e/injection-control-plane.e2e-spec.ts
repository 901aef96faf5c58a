import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { DeliveryMode, type DesiredSecret, type Grant } from '@sigil/agent-protocol';
import pg from 'pg';
import type { ApiClient } from '../harness/api-client.js';
import { eventually, holds } from '../harness/eventually.js';
import { metricValue } from '../harness/metrics.js';
import { startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import { enrollAgent, SyncSession, type EnrolledAgent } from '../harness/sync-session.js';
import { uniqueName } from '../harness/test-env.js';

// Delivery mode inject, the control plane's side, end to end: an inject app created over REST
// and published to a cluster reaches the agent (a raw Sync client over real mTLS gRPC) as
// DELIVERY_MODE_INJECT with its consumers; the agent's Grants come back through the consumption
// API; grants for secrets the cluster does not hold are ignored and counted. Real PostgreSQL,
// Redis and SoftHSM under a control-plane process.

let s: RunningControlPlane;
let admin: ApiClient;
let db: pg.Client;
let agent: EnrolledAgent;
let session: SyncSession;
const project = uniqueName('inj');
const cluster = uniqueName('c');
const consumers = [
  { namespace: 'shop', serviceAccount: 'checkout' },
  { namespace: 'batch', serviceAccount: '*' },
];
const app = `/projects/${project}/apps`;
const ids: Record<string, string> = {};

const ok = async <T extends { status: number; text: string }>(p: Promise<T>, status: number): Promise<T> => {
  const r = await p;
  if (r.status !== status) throw new Error(`HTTP ${r.status} (wanted ${status}): ${r.text.slice(0, 300)}`);
  return r;
};

/**
 * The first state the agent received holding `secret` in full that satisfies `check`. Every
 * state is acknowledged as it arrives, as an agent does: the control plane sends the next
 * generation only after that (a loaded machine may build the two publishes as two generations).
 */
async function received(secret: string, check: (x: DesiredSecret) => boolean): Promise<DesiredSecret> {
  const until = Date.now() + 30_000;
  for (;;) {
    for (const st of session.states) {
      const found = st.secrets.find((x) => x.secret === secret && check(x));
      if (found) {
        ackLatest();
        return found;
      }
    }
    ackLatest();
    if (Date.now() > until) throw new Error(`no state with ${secret} as wanted (got ${session.states.map((x) => x.generation).join(',')})`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

let acked = 0n;
function ackLatest(): void {
  const last = session.states.at(-1);
  if (last && last.generation !== acked) {
    session.ackState(last);
    acked = last.generation;
  }
}

const grant = (g: Partial<Grant>): Grant => ({
  secretId: ids['checkout-db']!,
  version: 1,
  namespace: 'shop',
  serviceAccount: 'checkout',
  pod: 'checkout-6c9f7-a1',
  count: 1,
  lastAt: new Date(),
  ...g,
});

const consumption = async () => (await admin.get(`${app}/checkout/consumption`)).body.items as Array<Record<string, unknown>>;

beforeAll(async () => {
  s = await startControlPlane();
  admin = s.admin;
  db = new pg.Client({ connectionString: s.databaseUrl });
  await db.connect();
  for (const [p, namespaces] of [
    [project, ['shop', 'batch']],
    [`${project}-x`, ['elsewhere']],
  ] as const) {
    await ok(admin.post('/projects', { name: p }), 201);
    await ok(admin.put(`/projects/${p}/namespaces`, { namespaces }), 200);
    await ok(admin.put(`/projects/${p}/cluster-selector`, { selector: {} }), 204);
  }
  await ok(admin.post(app, { name: 'checkout', namespace: 'shop', deliveryMode: 'inject', consumers }), 201);
  await ok(admin.post(app, { name: 'web', namespace: 'shop', deliveryMode: 'env' }), 201);
  // A secret of another project, never published to the cluster.
  await ok(
    admin.post(`/projects/${project}-x/apps`, {
      name: 'other',
      namespace: 'elsewhere',
      deliveryMode: 'inject',
      consumers: [{ namespace: 'elsewhere', serviceAccount: '*' }],
    }),
    201,
  );
  for (const [p, a, secret] of [
    [project, 'checkout', 'checkout-db'],
    [project, 'web', 'web-env'],
    [`${project}-x`, 'other', 'foreign'],
  ] as const) {
    const created = await ok(admin.post(`/projects/${p}/apps/${a}/secrets`, { name: secret, data: { K: 'canary-inj-1' } }), 201);
    ids[secret] = created.body.id;
  }

  await ok(admin.post('/clusters', { name: cluster }), 201);
  const token = (await admin.post(`/clusters/${cluster}/enrollment-tokens`)).body.token;
  const caPem = (await admin.get('/agents/trust')).body.caCertificatePem;
  agent = await enrollAgent(s.cp.grpcAddress, caPem, cluster, token);
  for (const a of ['checkout', 'web']) await ok(admin.post(`${app}/${a}/publish`, { clusters: [cluster] }), 200);
  session = new SyncSession(agent.client, { appliedGeneration: 0n });
}, 120_000);

afterAll(async () => {
  session?.cancel();
  agent?.close();
  await db?.end();
  await s?.stop();
});

describe('delivery mode inject through the control plane', () => {
  it('sends an inject app’s secrets as DELIVERY_MODE_INJECT with its consumers, other apps as before', async () => {
    const inj = await received('checkout-db', () => true);
    expect(inj).toMatchObject({
      app: 'checkout',
      secretId: ids['checkout-db'],
      deliveryMode: DeliveryMode.DELIVERY_MODE_INJECT,
      consumers,
    });
    const env = await received('web-env', () => true);
    expect(env).toMatchObject({ deliveryMode: DeliveryMode.DELIVERY_MODE_ENV, consumers: [] });
  });

  it('records Grants for secrets of inject apps delivered to this cluster only; ignores and counts the rest', async () => {
    await received('checkout-db', () => true);
    const ignored = () => metricValue(s.cp.url, 'sigil_injection_grants_total', { outcome: 'ignored' });
    const malformed = () => metricValue(s.cp.url, 'sigil_injection_grants_total', { outcome: 'malformed' });
    const [ignoredBefore, malformedBefore] = [await ignored(), await malformed()];
    const t0 = Date.now() - 60_000;
    session.grants([
      grant({ pod: 'checkout-6c9f7-a1', count: 2, lastAt: new Date(t0) }),
      grant({ pod: 'checkout-6c9f7-b2', count: 1, lastAt: new Date(t0 + 10_000) }),
      grant({ namespace: 'batch', serviceAccount: 'nightly', pod: 'report-29384-x' }),
      grant({ secretId: ids['web-env']! }), // delivered here, but as a Kubernetes Secret
      grant({ secretId: ids.foreign! }), // another project's, not published here
      grant({ secretId: randomUUID() }),
      grant({ namespace: 'Not-A-Label' }),
    ]);
    await eventually('the grants in the consumption view', async () => holds((await consumption()).length === 2), 15_000);
    expect(await consumption()).toEqual([
      {
        cluster,
        secret: 'checkout-db',
        version: 1,
        namespace: 'batch',
        serviceAccount: 'nightly',
        grants: 1,
        lastPod: 'report-29384-x',
        firstAt: expect.any(String),
        lastAt: expect.any(String),
      },
      {
        cluster,
        secret: 'checkout-db',
        version: 1,
        namespace: 'shop',
        serviceAccount: 'checkout',
        grants: 3,
        lastPod: 'checkout-6c9f7-b2',
        firstAt: new Date(t0).toISOString(),
        lastAt: new Date(t0 + 10_000).toISOString(),
      },
    ]);
    await eventually('the ignored grants counted', async () => holds((await ignored()) - ignoredBefore === 3));
    expect((await malformed()) - malformedBefore).toBe(1);
    // Nothing was stored for them, and no value anywhere.
    const rows = await db.query<{ secret_id: string }>('SELECT secret_id FROM injection_grants');
    expect(new Set(rows.rows.map((r) => r.secret_id))).toEqual(new Set([ids['checkout-db']]));
    expect(JSON.stringify((await db.query('SELECT * FROM injection_grants')).rows)).not.toContain('canary-inj');
  });

  it('a new version and new consumers reach the agent; later grants move the version and add up', async () => {
    await ok(admin.put(`${app}/checkout/secrets/checkout-db`, { data: { K: 'canary-inj-2' } }), 200);
    await received('checkout-db', (x) => x.version === 2);
    session.grants([grant({ version: 2, pod: 'checkout-6c9f7-c3' })]);
    await eventually('version 2 granted', async () =>
      holds((await consumption()).some((r) => r.serviceAccount === 'checkout' && r.version === 2 && r.grants === 4)),
    );

    const next = [{ namespace: 'shop', serviceAccount: 'checkout-v2' }];
    await ok(admin.patch(`${app}/checkout`, { consumers: next }), 200);
    const changed = await received('checkout-db', (x) => x.consumers.length === 1);
    expect(changed).toMatchObject({ version: 2, deliveryMode: DeliveryMode.DELIVERY_MODE_INJECT, consumers: next });
  });

  it('switching an app to inject resends its secrets in inject mode, with its consumers', async () => {
    const refused = await admin.patch(`${app}/web`, { deliveryMode: 'inject' });
    expect([refused.status, refused.body.code]).toEqual([400, 'consumers_required']);
    await ok(admin.patch(`${app}/web`, { deliveryMode: 'inject', consumers: [consumers[1]] }), 200);
    const web = await received('web-env', (x) => x.deliveryMode === DeliveryMode.DELIVERY_MODE_INJECT);
    expect(web.consumers).toEqual([consumers[1]]);
    // Now an inject app's secret delivered here: its grants count.
    session.grants([grant({ secretId: ids['web-env']!, namespace: 'batch', serviceAccount: 'default', pod: 'web-1' })]);
    await eventually('the web grant', async () =>
      holds((await admin.get(`${app}/web/consumption`)).body.items.some((r: any) => r.lastPod === 'web-1')),
    );
  });

  it('ends the stream of an agent that sends more than 1000 grants in one message', async () => {
    const extra = new SyncSession(agent.client, { appliedGeneration: 0n });
    try {
      extra.grants(Array.from({ length: 1001 }, () => grant({})));
      const end = await extra.ended;
      expect(end).toMatchObject({ errorCode: 'too_many_grants' });
    } finally {
      extra.cancel();
    }
  });
});
