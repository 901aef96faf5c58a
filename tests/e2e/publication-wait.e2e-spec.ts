import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import type { ApiClient } from '../harness/api-client.js';
import type { ControlPlaneProcess } from '../harness/control-plane-process.js';
import { startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import { uniqueName } from '../harness/test-env.js';
import { syncedTestAgent } from '../harness/test-agent.js';
import { eventually } from '../harness/eventually.js';

// `GET …/publication?wait=` on two replicas sharing PostgreSQL and Redis: a waiter wakes when an
// agent reports (on the other replica), idle waiters cost the database nothing, and a token
// holds at most WAITERS_PER_TOKEN of them.

const WAITERS_PER_TOKEN = 10;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let a: RunningControlPlane;
let b: { cp: ControlPlaneProcess; admin: ApiClient };
let db: pg.Client;
const project = uniqueName('w');

/** Index and sequential scans of `placements` so far: every publication read does one. */
async function placementReads(): Promise<number> {
  await db.query('SELECT pg_stat_clear_snapshot()');
  const r = await db.query<{ n: string }>(
    `SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) AS n FROM pg_stat_user_tables WHERE relname = 'placements'`,
  );
  return Number(r.rows[0]!.n);
}

/** A long-poll that the test can hang up on. */
function waitOn(api: ApiClient, app: string, seconds: number) {
  const hangUp = new AbortController();
  const answered = fetch(`${api.baseUrl}/api/v1/projects/${project}/apps/${app}/publication?wait=${seconds}`, {
    headers: { Authorization: `Bearer ${api.token}` },
    signal: hangUp.signal,
  }).then(async (res) => ({ status: res.status, headers: res.headers, body: (await res.json()) as any }));
  answered.catch(() => undefined); // hung up on purpose
  return { answered, hangUp: () => hangUp.abort() };
}

beforeAll(async () => {
  a = await startControlPlane();
  b = await a.startReplica();
  db = new pg.Client({ connectionString: a.databaseUrl });
  await db.connect();
  expect((await a.admin.post('/projects', { name: project })).status).toBe(201);
  expect((await a.admin.put(`/projects/${project}/cluster-selector`, { selector: {} })).status).toBe(204);
  for (const app of ['checkout', 'idle']) {
    expect((await a.admin.put(`/projects/${project}/namespaces`, { namespaces: ['shop'] })).status).toBe(200);
    expect((await a.admin.post(`/projects/${project}/apps`, { name: app, namespace: 'shop', deliveryMode: 'env' })).status).toBe(201);
    expect((await a.admin.post(`/projects/${project}/apps/${app}/secrets`, { name: `${app}-env`, data: { K: app } })).status).toBe(201);
  }
});

afterAll(async () => {
  await db?.end();
  await a?.stop();
});

describe('waiting for a publication', () => {
  it('a waiter on replica B answers within 1 s of the agent reporting through replica A', async () => {
    const cluster = uniqueName('c');
    const { agent, watch } = await syncedTestAgent(a.admin, a.cp.grpcAddress, cluster);
    try {
      const before = watch.generations.at(-1)!;
      expect((await a.admin.post(`/projects/${project}/apps/checkout/publish`, { clusters: [cluster] })).status).toBe(200);
      await watch.waitFor((g) => g.some((x) => x > before)); // built: only the agent's report is missing

      const waiter = waitOn(b.admin, 'checkout', 60);
      await sleep(1_500); // it is waiting, idle
      await agent.sync();
      const reported = Date.now();
      const answer = await waiter.answered;
      const latency = Date.now() - reported;
      process.stderr.write(`[publication-wait] answered ${latency} ms after the agent's report\n`);
      expect(answer.status).toBe(200);
      expect(answer.body.summary).toMatchObject({ clusters: 1, provisioned: 1, converged: true });
      expect(latency).toBeLessThan(1_000);
    } finally {
      watch.cancel();
      agent.close();
    }
  });

  it(`${WAITERS_PER_TOKEN} idle waiters cost no database reads; the next one is refused with 429; hanging up frees a slot`, async () => {
    // Published to a cluster whose agent never comes: pending for as long as anyone waits.
    const ghost = uniqueName('ghost');
    expect((await a.admin.post('/clusters', { name: ghost })).status).toBe(201);
    expect((await a.admin.post(`/projects/${project}/apps/idle/publish`, { clusters: [ghost] })).status).toBe(200);
    const viewer = a.admin.as((await a.admin.post('/tokens', { name: uniqueName('viewer'), role: 'viewer', project })).body.token);

    const waiters = Array.from({ length: WAITERS_PER_TOKEN }, () => waitOn(viewer, 'idle', 60));
    try {
      await sleep(2_000); // all waiting; their first reads are done
      const start = await placementReads();
      await sleep(6_000);
      const reads = (await placementReads()) - start;
      process.stderr.write(`[publication-wait] ${WAITERS_PER_TOKEN} waiters over 6 s: ${reads} placement reads\n`);
      // Polling every 200 ms would be ~300; a few may be other work's (the membership pass).
      expect(reads).toBeLessThan(15);

      const refused = await viewer.get(`/projects/${project}/apps/idle/publication?wait=3`);
      expect(refused.status).toBe(429);
      expect(refused.headers.get('content-type')).toContain('application/problem+json');
      expect(refused.body.code).toBe('too_many_waiters');
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
      // Without wait there is nothing to hold: still answered. Another token has slots of its own.
      expect((await viewer.get(`/projects/${project}/apps/idle/publication`)).status).toBe(200);
      const other = await a.admin.get(`/projects/${project}/apps/idle/publication?wait=1`);
      expect([other.status, other.body.summary.pending]).toEqual([200, 1]);
    } finally {
      for (const w of waiters) w.hangUp();
    }
    // The server notices the hang-ups: the token may wait again.
    const again = await eventually(
      'a wait accepted again',
      async () => {
        const r = await viewer.get(`/projects/${project}/apps/idle/publication?wait=1`);
        return r.status === 429 ? undefined : r;
      },
      5_000,
    );
    expect(again.status).toBe(200);
  }, 60_000);
});
