import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { AppsService } from '../../apps/control-plane/src/apps/apps.service.js';
import { Actor } from '../../apps/control-plane/src/auth/policy.js';
import { ClustersService } from '../../apps/control-plane/src/clusters/clusters.service.js';
import { PublicationsService } from '../../apps/control-plane/src/publications/publications.service.js';
import type { PublicationView } from '../../apps/control-plane/src/publications/publications.dto.js';
import { ProjectsService } from '../../apps/control-plane/src/projects/projects.service.js';
import { SecretsService } from '../../apps/control-plane/src/secrets/secrets.service.js';
import { agentEndpoint, startTestApp, type TestApp } from '../harness/app-context.js';
import { eventually } from '../harness/eventually.js';
import { uniqueName } from '../harness/test-env.js';
import { TestAgent, type TestSyncStream } from '../harness/test-agent.js';

// Publish → batched builds → snapshot → Sync stream → agent applies, opens, acknowledges → status.
// Real PostgreSQL, Redis (BullMQ), SoftHSM and mTLS gRPC; the agents are test clients.

const admin = new Actor('00000000-0000-4000-8000-000000000001', 'test-admin', 'admin', null);

describe('publish and unpublish', () => {
  let t: TestApp;
  let publications: PublicationsService;
  let clusters: ClustersService;
  let secrets: SecretsService;
  const project = uniqueName('p');
  const agents: Array<{ agent: TestAgent; watch: TestSyncStream }> = [];

  /** Waits until every watch saw a generation above what it had, returning how long that took. */
  async function notified(sessions: TestSyncStream[], after: bigint[], started: number): Promise<number[]> {
    return Promise.all(
      sessions.map(async (w, i) => {
        await w.waitFor((g) => g.some((x) => x > after[i]!), 5_000);
        return Date.now() - started;
      }),
    );
  }
  const last = (w: TestSyncStream) => w.generations.at(-1) ?? 0n;

  beforeAll(async () => {
    t = await startTestApp();
    publications = t.app.get(PublicationsService);
    clusters = t.app.get(ClustersService);
    secrets = t.app.get(SecretsService);
    await t.app.get(ProjectsService).create({ name: project });
    await t.app.get(ProjectsService).setNamespaces(admin, project, ['shop']);
    await t.app.get(AppsService).create(admin, project, { name: 'checkout', namespace: 'shop', deliveryMode: 'env' });
    await secrets.create(admin, project, 'checkout', { name: 'checkout-db', data: { PASSWORD: 's3cret-v1', USER: 'app' } });
    await secrets.create(admin, project, 'checkout', { name: 'checkout-api', data: { TOKEN: 'tok-1' } });
    await publications.setProjectSelector(admin, project, { matchLabels: { tier: 'store' } });
    const { address, caPem } = agentEndpoint(t.app);
    for (const region of ['eu', 'us', 'ap']) {
      const name = uniqueName(`store-${region}`);
      await clusters.register(name, { tier: 'store', region });
      const agent = new TestAgent(address, caPem, name);
      await agent.enroll({ $case: 'bootstrapToken', value: (await clusters.createEnrollmentToken(admin, name)).token });
      await agent.sync();
      agents.push({ agent, watch: agent.open() });
    }
    await Promise.all(agents.map((a) => a.watch.waitFor((g) => g.length > 0)));
  });

  afterAll(async () => {
    for (const a of agents) {
      a.watch.cancel();
      a.agent.close();
    }
    await t?.dispose();
  });

  const syncAll = () => Promise.all(agents.map((a) => a.agent.sync()));
  const status = (wait = 10) => publications.view(admin, project, 'checkout', wait);

  it('publishes to 3 clusters by selector: each is notified within 1 s and receives blobs only it can open', async () => {
    const before = agents.map((a) => last(a.watch));
    const started = Date.now();
    const view = await publications.publish(admin, project, 'checkout', { selector: { matchLabels: { tier: 'store' } } });
    expect(view.deliveries.map((d) => d.state)).toEqual(['pending', 'pending', 'pending']);
    const latencies = await notified(
      agents.map((a) => a.watch),
      before,
      started,
    );
    for (const ms of latencies) expect(ms).toBeLessThan(1_000);

    const results = await syncAll();
    for (const r of results) {
      expect(r.secrets.get('shop/checkout-db')).toEqual({ PASSWORD: 's3cret-v1', USER: 'app' });
      expect(r.secrets.get('shop/checkout-api')).toEqual({ TOKEN: 'tok-1' });
    }
    // Cluster B cannot open what was built for cluster A (its delivery key differs).
    const stateA = agents[0]!.agent.lastState!;
    const intruder = agents[1]!.agent;
    const { openClusterKeyEnvelope } = await import('@sigil/envelope');
    expect(() => openClusterKeyEnvelope(intruder.delivery.privateKeyPem, stateA.clusterKeyEnvelopes[0]!)).toThrow();

    const done = await status();
    expect(done.summary).toMatchObject({ clusters: 3, provisioned: 3, pending: 0, converged: true });
    // A published app cannot be deleted: its Secrets would be left behind in the clusters.
    await expect(t.app.get(AppsService).delete(admin, project, 'checkout', undefined)).rejects.toMatchObject({ code: 'app_published' });
  });

  it('re-delivers a rotated value everywhere, and a rollback brings the old one back', async () => {
    let before = agents.map((a) => last(a.watch));
    await secrets.update(admin, project, 'checkout', 'checkout-db', { data: { PASSWORD: 's3cret-v2', USER: 'app' } }, undefined);
    await notified(
      agents.map((a) => a.watch),
      before,
      Date.now(),
    );
    for (const r of await syncAll()) expect(r.secrets.get('shop/checkout-db')?.PASSWORD).toBe('s3cret-v2');
    expect((await status()).summary.provisioned).toBe(3);

    before = agents.map((a) => last(a.watch));
    await secrets.rollback(admin, project, 'checkout', 'checkout-db', 1, undefined);
    await notified(
      agents.map((a) => a.watch),
      before,
      Date.now(),
    );
    for (const r of await syncAll()) expect(r.secrets.get('shop/checkout-db')?.PASSWORD).toBe('s3cret-v1');
  });

  it('reports a cluster that cannot apply as failed, naming the secret', async () => {
    const before = agents.map((a) => last(a.watch));
    await secrets.update(admin, project, 'checkout', 'checkout-api', { data: { TOKEN: 'tok-2' } }, undefined);
    await notified(
      agents.map((a) => a.watch),
      before,
      Date.now(),
    );
    await agents[0]!.agent.sync({ fail: (target) => (target === 'shop/checkout-api' ? 'Conflict' : undefined) });
    await agents[1]!.agent.sync();
    await agents[2]!.agent.sync();
    // Acks are group-committed at the centre a few ms after they are sent.
    const view = await eventually('the three reports recorded', async () => {
      const v = await status();
      return v.summary.converged ? v : undefined;
    });
    const failed = view.deliveries.find((d) => d.cluster === agents[0]!.agent.cluster)!;
    expect(failed).toMatchObject({ state: 'failed', reason: 'Conflict: shop/checkout-api' });
    expect(view.summary).toMatchObject({ provisioned: 2, failed: 1, converged: true });
    await agents[0]!.agent.sync(); // fixed
    await eventually('the fixed cluster provisioned', async () => ((await status()).summary.provisioned === 3 ? true : undefined), 5_000);
  });

  it('relabelling a cluster moves it out of (and back into) the publication', async () => {
    const { agent, watch } = agents[2]!;
    let before = last(watch);
    await clusters.relabel(agent.cluster, { tier: 'lab', region: 'ap' }, undefined);
    await watch.waitFor((g) => g.some((x) => x > before));
    expect((await agent.sync()).secrets.size).toBe(0);
    let view: PublicationView = await status();
    expect(view.deliveries.find((d) => d.cluster === agent.cluster)?.state).toBe('deprovisioned');

    before = last(watch);
    await clusters.relabel(agent.cluster, { tier: 'store', region: 'ap' }, undefined);
    await watch.waitFor((g) => g.some((x) => x > before));
    expect((await agent.sync()).secrets.size).toBe(2);
    view = await status();
    expect(view.deliveries.find((d) => d.cluster === agent.cluster)?.state).toBe('provisioned');
  });

  it('unpublishes from one cluster by name, then from all: agents are told to delete, statuses end deprovisioned', async () => {
    const [first] = agents;
    let before = agents.map((a) => last(a.watch));
    await publications.unpublish(admin, project, 'checkout', { clusters: [first!.agent.cluster] });
    await first!.watch.waitFor((g) => g.some((x) => x > before[0]!));
    expect((await first!.agent.sync()).secrets.size).toBe(0);
    expect((await agents[1]!.agent.sync()).secrets.size).toBe(2); // the others keep it

    before = agents.map((a) => last(a.watch));
    await publications.unpublish(admin, project, 'checkout', {});
    await notified(
      agents.slice(1).map((a) => a.watch),
      before.slice(1),
      Date.now(),
    );
    for (const r of await syncAll()) expect(r.secrets.size).toBe(0);
    const view = await status();
    expect(view.deliveries.map((d) => d.state)).toEqual(['deprovisioned', 'deprovisioned', 'deprovisioned']);
    expect(view.summary).toMatchObject({ clusters: 0, converged: true });
  });

  it('refuses to publish where the project may not, and to unknown clusters', async () => {
    const lab = uniqueName('lab');
    await clusters.register(lab, { tier: 'lab' });
    await expect(publications.publish(admin, project, 'checkout', { clusters: [lab] })).rejects.toMatchObject({
      code: 'cluster_not_allowed',
    });
    await expect(publications.publish(admin, project, 'checkout', { clusters: ['no-such-cluster'] })).rejects.toMatchObject({
      code: 'cluster_not_found',
    });
    await expect(publications.publish(admin, project, 'checkout', {})).rejects.toMatchObject({ code: 'target_required' });
  });
});
