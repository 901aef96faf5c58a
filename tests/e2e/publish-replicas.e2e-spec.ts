import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { waitFor } from '../../apps/control-plane/src/embedded/local-process.js';
import { generateAgentKeyPair } from '@sigil/envelope';
import { DataSource } from 'typeorm';
import { ClusterKeyService } from '../../apps/control-plane/src/keys/cluster-keys.service.js';
import type { ApiClient } from '../harness/api-client.js';
import { startTestApp, type TestApp } from '../harness/app-context.js';
import type { ControlPlaneProcess } from '../harness/control-plane-process.js';
import { startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import { uniqueName } from '../harness/test-env.js';
import { syncedTestAgent } from '../harness/test-agent.js';

// Control-plane processes sharing PostgreSQL and Redis: a publish through replica A reaches an
// agent connected to replica B; a replica killed with SIGKILL mid-publish loses nothing.

async function appWithSecrets(api: ApiClient, project: string, app: string, secrets: number): Promise<void> {
  expect((await api.post('/projects', { name: project })).status).toBe(201);
  expect((await api.put(`/projects/${project}/cluster-selector`, { selector: {} })).status).toBe(204);
  expect((await api.put(`/projects/${project}/namespaces`, { namespaces: [project] })).status).toBe(200);
  expect((await api.post(`/projects/${project}/apps`, { name: app, namespace: project, deliveryMode: 'env' })).status).toBe(201);
  for (let i = 0; i < secrets; i++) {
    expect((await api.post(`/projects/${project}/apps/${app}/secrets`, { name: `s${i}`, data: { VALUE: `v1-${i}` } })).status).toBe(201);
  }
}

describe('publishing across replicas', () => {
  let a: RunningControlPlane;
  let b: { cp: ControlPlaneProcess; admin: ApiClient };

  beforeAll(async () => {
    a = await startControlPlane();
    b = await a.startReplica();
  });

  afterAll(async () => {
    await a?.stop();
  });

  it('a publish through replica A reaches an agent on replica B within 1 s; --wait answers once it applied', async () => {
    const project = uniqueName('p');
    await appWithSecrets(a.admin, project, 'checkout', 2);
    const name = uniqueName('c');
    const { agent, watch } = await syncedTestAgent(a.admin, b.cp.grpcAddress, name, { tier: 'store' });
    try {
      const before = watch.generations.at(-1)!;

      const started = Date.now();
      const publish = await a.admin.post(
        `/projects/${project}/apps/checkout/publish`,
        { clusters: [name] },
        { 'Idempotency-Key': 'release-42' },
      );
      expect(publish.status).toBe(200);
      await watch.waitFor((g) => g.some((x) => x > before));
      expect(Date.now() - started).toBeLessThan(1_000);

      const waiting = a.admin.get(`/projects/${project}/apps/checkout/publication?wait=20`);
      const synced = await agent.sync();
      expect(synced.secrets.get(`${project}/s1`)).toEqual({ VALUE: 'v1-1' });
      const status = await waiting;
      expect(status.body.summary).toMatchObject({ clusters: 1, provisioned: 1, converged: true });

      // The same Idempotency-Key: the first answer again; with another body: refused.
      const again = await a.admin.post(
        `/projects/${project}/apps/checkout/publish`,
        { clusters: [name] },
        { 'Idempotency-Key': 'release-42' },
      );
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(again.body).toEqual(publish.body);
      const other = await a.admin.post(`/projects/${project}/apps/checkout/publish`, { selector: {} }, { 'Idempotency-Key': 'release-42' });
      expect(other.status).toBe(409);
      expect(other.body.code).toBe('idempotency_key_reused');
    } finally {
      watch.cancel();
      agent.close();
    }
  });

  it('a replica killed with SIGKILL mid-publish: after a restart every cluster converges, none stale', async () => {
    const CLUSTERS = 400;
    // Enrolled clusters seeded directly (rows plus delivery keys, as enrollment makes them).
    const seeder: TestApp = await startTestApp({ roles: ['http'], reuse: { databaseUrl: a.databaseUrl, keyLabelPrefix: a.redisPrefix } });
    const ds = seeder.app.get(DataSource);
    try {
      const ids = await ds.query<Array<{ id: string }>>(
        `INSERT INTO clusters (name, labels, state, enrolled_at, version)
         SELECT 'kill-' || lpad(i::text, 4, '0'), '{"fleet":"kill"}', 'enrolled', now(), 1 FROM generate_series(1, $1) AS i RETURNING id`,
        [CLUSTERS],
      );
      const agentKey = generateAgentKeyPair().publicKeyDer;
      const keys = seeder.app.get(ClusterKeyService);
      for (let i = 0; i < ids.length; i += 50) await Promise.all(ids.slice(i, i + 50).map((r) => keys.issue(r.id, agentKey)));

      const project = uniqueName('k');
      await appWithSecrets(b.admin, project, 'pos', 10);
      await b.admin.post(`/projects/${project}/apps/pos/publish`, { selector: { matchLabels: { fleet: 'kill' } } });
      // Kill both replicas while jobs are in flight.
      const builtAtKill = Number(
        (await ds.query(`SELECT count(*) AS n FROM clusters WHERE name LIKE 'kill-%' AND built_generation = desired_generation`))[0].n,
      );
      await Promise.all([a.cp.stop('SIGKILL'), b.cp.stop('SIGKILL')]);
      expect(builtAtKill).toBeLessThan(CLUSTERS);

      const restarted = await a.startReplica();
      const started = Date.now();
      await waitFor(
        'convergence',
        async () => {
          const [row] = await ds.query(
            `SELECT count(*) FILTER (WHERE built_generation < desired_generation) AS behind FROM clusters WHERE name LIKE 'kill-%'`,
          );
          return Number(row.behind) === 0;
        },
        { timeoutMs: 90_000 },
      );
      process.stderr.write(
        `[publish-replicas] ${CLUSTERS - builtAtKill} of ${CLUSTERS} clusters left at SIGKILL converged ${Date.now() - started} ms after the restart\n`,
      );
      const [check] = await ds.query(
        `SELECT count(*) AS rows, count(*) FILTER (WHERE cs.secret_version <> s.current_version) AS stale
           FROM cluster_secrets cs JOIN secrets s ON s.id = cs.secret_id JOIN clusters c ON c.id = cs.cluster_id WHERE c.name LIKE 'kill-%'`,
      );
      expect({ rows: Number(check.rows), stale: Number(check.stale) }).toEqual({ rows: CLUSTERS * 10, stale: 0 });
      const view = await restarted.admin.get(`/projects/${project}/apps/pos/publication`);
      expect(view.body.deliveries).toHaveLength(CLUSTERS);
    } finally {
      await seeder.close();
    }
  }, 180_000);
});
