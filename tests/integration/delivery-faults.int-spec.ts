import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { waitFor } from '../../apps/control-plane/src/embedded/local-process.js';
import { generateAgentKeyPair } from '@sigil/envelope';
import { Redis } from 'ioredis';
import { DataSource } from 'typeorm';
import { AppsService } from '../../apps/control-plane/src/apps/apps.service.js';
import { Actor } from '../../apps/control-plane/src/auth/policy.js';
import { PublicationsService } from '../../apps/control-plane/src/publications/publications.service.js';
import { EmbeddedRedis } from '../../apps/control-plane/src/embedded/embedded-redis.js';
import { ClusterKeyService } from '../../apps/control-plane/src/keys/cluster-keys.service.js';
import { ProjectsService } from '../../apps/control-plane/src/projects/projects.service.js';
import { SecretsService } from '../../apps/control-plane/src/secrets/secrets.service.js';
import { startTestApp, type TestApp } from '../harness/app-context.js';
import { uniqueName } from '../harness/test-env.js';

// A 1,000-cluster publish whose Redis is flushed halfway: PostgreSQL's desired state and the
// reconciler bring every cluster to the final generation, and no snapshot is stale. This test
// has a redis-server of its own, so FLUSHALL touches nobody else.

const CLUSTERS = 1_000;
const admin = new Actor('00000000-0000-4000-8000-000000000002', 'test-admin', 'admin', null);

describe('delivery survives a Redis flush mid-publish', () => {
  let redis: EmbeddedRedis;
  let redisDir: string;
  let t: TestApp;
  let ds: DataSource;

  beforeAll(async () => {
    redisDir = await mkdtemp(path.join(tmpdir(), 'sigil-redis-'));
    redis = new EmbeddedRedis({ dir: redisDir, durable: false });
    t = await startTestApp({ redisUrl: await redis.start() });
    ds = t.app.get(DataSource);
  });

  afterAll(async () => {
    await t?.dispose();
    await redis?.stop();
    await rm(redisDir, { recursive: true, force: true });
  });

  it(`brings all ${CLUSTERS} clusters to the final generation after FLUSHALL`, async () => {
    const project = uniqueName('fleet');
    await t.app.get(ProjectsService).create({ name: project });
    await t.app.get(ProjectsService).setNamespaces(admin, project, [project]);
    await t.app.get(AppsService).create(admin, project, { name: 'pos', namespace: project, deliveryMode: 'volume' });
    const secrets = t.app.get(SecretsService);
    for (let i = 0; i < 10; i++) await secrets.create(admin, project, 'pos', { name: `s${i}`, data: { VALUE: `v1-${i}` } });
    const publications = t.app.get(PublicationsService);
    await publications.setProjectSelector(admin, project, {});

    // 1,000 enrolled clusters: rows and delivery keys as enrollment makes them (one agent key for all, to save time).
    const ids = await ds.query<Array<{ id: string }>>(
      `INSERT INTO clusters (name, labels, state, enrolled_at, version)
       SELECT 'fleet-' || lpad(i::text, 4, '0'), '{"fleet":"stores"}', 'enrolled', now(), 1 FROM generate_series(1, $1) AS i
       RETURNING id`,
      [CLUSTERS],
    );
    const agentKey = generateAgentKeyPair().publicKeyDer;
    const keys = t.app.get(ClusterKeyService);
    for (let i = 0; i < ids.length; i += 50) await Promise.all(ids.slice(i, i + 50).map((r) => keys.issue(r.id, agentKey)));

    await publications.publish(admin, project, 'pos', { selector: { matchLabels: { fleet: 'stores' } } });
    // Let some jobs run, then lose every queued one, then change a value so the final state differs.
    await waitFor(
      'first builds',
      async () => Number((await ds.query(`SELECT count(*) AS n FROM clusters WHERE built_generation > 0`))[0].n) >= 50,
      { timeoutMs: 30_000 },
    );
    const r = new Redis(redis.url());
    expect(await r.flushall()).toBe('OK');
    r.disconnect();
    await secrets.update(admin, project, 'pos', 's3', { data: { VALUE: 'v2-3' } }, undefined);

    const started = Date.now();
    await waitFor(
      'convergence',
      async () => {
        const [row] = await ds.query(`SELECT count(*) FILTER (WHERE built_generation < desired_generation) AS behind FROM clusters`);
        return Number(row.behind) === 0;
      },
      { timeoutMs: 90_000 },
    );
    const convergedMs = Date.now() - started;
    process.stderr.write(`[delivery-faults] ${CLUSTERS} clusters converged ${convergedMs} ms after FLUSHALL\n`);

    // Every snapshot carries the current version of all 10 secrets: none is stale.
    const [check] = await ds.query(
      `SELECT count(*) AS rows, count(*) FILTER (WHERE cs.secret_version <> s.current_version) AS stale, count(DISTINCT cs.cluster_id) AS clusters
         FROM cluster_secrets cs JOIN secrets s ON s.id = cs.secret_id`,
    );
    expect({ rows: Number(check.rows), stale: Number(check.stale), clusters: Number(check.clusters) }).toEqual({
      rows: CLUSTERS * 10,
      stale: 0,
      clusters: CLUSTERS,
    });
    const view = await publications.view(admin, project, 'pos');
    expect(view.deliveries).toHaveLength(CLUSTERS);
  }, 180_000);
});
