import { randomBytes, randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { DESIRED_STATE_PAGE_BYTES, GetDesiredStateResponse, MAX_AGENT_MESSAGE_BYTES } from '@sigil/agent-protocol';
import { encodeSecretPayload } from '@sigil/envelope';
import { DataSource } from 'typeorm';
import { AppsService } from '../../apps/control-plane/src/apps/apps.service.js';
import { Actor } from '../../apps/control-plane/src/auth/policy.js';
import { ClustersService } from '../../apps/control-plane/src/clusters/clusters.service.js';
import { PublicationsService } from '../../apps/control-plane/src/delivery/publications.service.js';
import { SealedValueService } from '../../apps/control-plane/src/keys/sealed-values.service.js';
import { ProjectsService } from '../../apps/control-plane/src/projects/projects.service.js';
import { SecretsService } from '../../apps/control-plane/src/secrets/secrets.service.js';
import { agentEndpoint, startTestApp, type TestApp } from '../harness/app-context.js';
import { failureOf, TestAgent } from '../harness/test-agent.js';
import { uniqueName } from '../harness/test-env.js';

// A cluster's desired state far above any single gRPC message: 100 apps × 50 secrets, five of
// them 1 MiB, reaches one agent over real mTLS gRPC, page by page, and opens completely.
// The bulk is sealed by the real HSM in batches and inserted in a few statements (creating
// 5,000 secrets one by one would take minutes); the 1 MiB ones go through SecretsService.

const admin = new Actor('00000000-0000-4000-8000-000000000001', 'test-admin', 'admin', null);
const APPS = 100;
const PER_APP = 50;
const BIG = 5;
const MiB = 1024 * 1024;

describe('a desired state of 5,000 secrets and 1 MiB values', () => {
  let t: TestApp;
  let agent: TestAgent;
  const project = uniqueName('p');
  const cluster = uniqueName('big');
  /** namespace/name → the value of its one key "v" */
  const expected = new Map<string, Buffer>();
  const target = (i: number) => ({ app: `a${i}`, namespace: `ns-${i % 10}` });

  async function seedBulk(projectId: string, appIds: string[]): Promise<void> {
    const rows: Array<{ id: string; appId: string; app: string; name: string; value: Buffer }> = [];
    for (let i = 0; i < APPS; i++) {
      for (let j = i < BIG ? 1 : 0; j < PER_APP; j++) {
        const name = `a${i}-s${j}`;
        const value = Buffer.from(`value-${i}-${j}-${randomBytes(48).toString('hex')}`);
        rows.push({ id: randomUUID(), appId: appIds[i]!, app: target(i).app, name, value });
        expected.set(`${target(i).namespace}/${name}`, value);
      }
    }
    const sealer = t.app.get(SealedValueService);
    const ds = t.app.get(DataSource);
    for (let k = 0; k < rows.length; k += 1_000) {
      const chunk = rows.slice(k, k + 1_000);
      const sealed = await sealer.seal(
        chunk.map((r) => ({
          value: encodeSecretPayload(new Map([['v', Buffer.from(r.value)]])),
          context: { projectId, app: r.app, secret: r.name, secretId: r.id, version: 1 },
        })),
      );
      await ds.query(
        `INSERT INTO secrets (id, project_id, app_id, namespace, name, type, current_version, latest_version, version)
         SELECT x.id, $2, x.app, a.namespace, x.name, 'Opaque', 1, 1, 1
           FROM unnest($1::uuid[], $3::uuid[], $4::text[]) AS x(id, app, name) JOIN apps a ON a.id = x.app`,
        [chunk.map((r) => r.id), projectId, chunk.map((r) => r.appId), chunk.map((r) => r.name)],
      );
      await ds.query(
        `INSERT INTO secret_versions (secret_id, version, sealed_value_id, keys, fingerprints, size_bytes, created_by)
         SELECT s, 1, sv, '{v}', '{}', n, 'seed' FROM unnest($1::uuid[], $2::uuid[], $3::int[]) AS x(s, sv, n)`,
        [chunk.map((r) => r.id), sealed, chunk.map((r) => r.value.length + 1)],
      );
    }
  }

  beforeAll(async () => {
    t = await startTestApp();
    await t.app.get(ProjectsService).create({ name: project });
    await t.app.get(ProjectsService).setNamespaces(
      admin,
      project,
      Array.from({ length: 10 }, (_, i) => `ns-${i}`),
    );
    const apps = t.app.get(AppsService);
    for (let i = 0; i < APPS; i++)
      await apps.create(admin, project, { name: target(i).app, namespace: target(i).namespace, deliveryMode: 'env' });
    const ds = t.app.get(DataSource);
    const [{ id: projectId }] = await ds.query<[{ id: string }]>('SELECT id FROM projects WHERE name = $1', [project]);
    const appIds = await ds.query<Array<{ id: string; name: string }>>('SELECT id, name FROM apps WHERE project_id = $1', [projectId]);
    const byName = new Map(appIds.map((a) => [a.name, a.id]));
    await seedBulk(
      projectId,
      Array.from({ length: APPS }, (_, i) => byName.get(target(i).app)!),
    );
    // The 1 MiB ones through the service the REST API calls: validated, sealed, versioned.
    const secrets = t.app.get(SecretsService);
    for (let i = 0; i < BIG; i++) {
      const value = randomBytes(MiB - 1); // key "v" + value: exactly the Kubernetes limit
      expected.set(`${target(i).namespace}/a${i}-s0`, value);
      await secrets.create(admin, project, target(i).app, { name: `a${i}-s0`, binaryData: { v: value.toString('base64') } });
    }
    const clusters = t.app.get(ClustersService);
    await clusters.register(cluster, {});
    // Published before the cluster enrolls: enrollment then builds the whole snapshot once.
    const publications = t.app.get(PublicationsService);
    await publications.setProjectSelector(admin, project, {});
    for (let i = 0; i < APPS; i++) await publications.publish(admin, project, target(i).app, { clusters: [cluster] });
    const { address, caPem } = agentEndpoint(t.app);
    agent = new TestAgent(address, caPem, cluster);
    await agent.enroll({ $case: 'bootstrapToken', value: (await clusters.createEnrollmentToken(admin, cluster)).token });
  }, 120_000);

  afterAll(async () => {
    agent?.close();
    await t?.dispose();
  });

  /** Lists until the build has caught up with every publish. */
  async function complete(): Promise<{ generation: bigint; count: number }> {
    const until = Date.now() + 60_000;
    for (;;) {
      const s = await agent.desiredState();
      if (s.secrets.length === APPS * PER_APP) return { generation: s.generation, count: s.secrets.length };
      if (Date.now() > until) throw new Error(`only ${s.secrets.length} secrets desired after 60 s`);
      await new Promise((r) => setTimeout(r, 1_000));
    }
  }

  it('delivers all of it to the agent over mTLS gRPC, in pages under the message limit, and every envelope opens', async () => {
    await complete();
    const { secrets } = await agent.sync();
    expect(secrets.size).toBe(APPS * PER_APP);
    // Every text value arrived as written; the random 1 MiB ones are compared byte for byte below.
    const big = new Set(Array.from({ length: BIG }, (_, i) => `${target(i).namespace}/a${i}-s0`));
    const wrong = [...expected].filter(([k, v]) => !big.has(k) && secrets.get(k)?.v !== v.toString());
    expect(wrong.map(([k]) => k)).toEqual([]);
    expect([...expected.keys()].filter((k) => !secrets.has(k))).toEqual([]);

    // Page by page, as the wire carries it.
    let total = 0;
    let pages = 0;
    const first = await agent.desiredStatePage();
    const generation = first.generation;
    for (let page = first; ;) {
      pages++;
      const bytes = GetDesiredStateResponse.encode(page).finish().length;
      expect(bytes).toBeLessThanOrEqual(DESIRED_STATE_PAGE_BYTES + 64 * 1024);
      expect(bytes).toBeLessThan(MAX_AGENT_MESSAGE_BYTES);
      total += bytes;
      expect(page.generation).toBe(generation);
      if (!page.nextPageToken) break;
      page = await agent.desiredStatePage({ generation, pageToken: page.nextPageToken });
    }
    expect(total).toBeGreaterThan(4 * MiB + 2 * MiB);
    expect(pages).toBeGreaterThanOrEqual(4);
  }, 90_000);

  it('delivers the 1 MiB values byte for byte', async () => {
    const { openClusterKeyEnvelope, openSecretEnvelope, decodeSecretPayload } = await import('@sigil/envelope');
    const state = await agent.desiredState();
    const keys = new Map(
      state.clusterKeyEnvelopes.map((e) => {
        const k = openClusterKeyEnvelope(agent.delivery.privateKeyPem, e);
        return [k.version, k.key] as const;
      }),
    );
    for (let i = 0; i < BIG; i++) {
      const s = state.secrets.find((x) => x.secret === `a${i}-s0`)!;
      const payload = openSecretEnvelope(s.envelope, keys, s);
      expect(
        decodeSecretPayload(payload)
          .get('v')!
          .equals(expected.get(`${target(i).namespace}/a${i}-s0`)!),
      ).toBe(true);
    }
  });

  it('refuses to continue a listing across generations (ABORTED snapshot_changed); the agent lists again', async () => {
    const page1 = await agent.desiredStatePage();
    expect(page1.nextPageToken).not.toBe('');
    await t.app.get(SecretsService).update(admin, project, 'a7', 'a7-s3', { data: { v: 'rotated' } }, undefined);
    const until = Date.now() + 30_000;
    while ((await agent.desiredStatePage()).generation === page1.generation) {
      if (Date.now() > until) throw new Error('the snapshot was not rebuilt');
      await new Promise((r) => setTimeout(r, 200));
    }
    const err = await agent.desiredStatePage({ generation: page1.generation, pageToken: page1.nextPageToken }).catch((e: unknown) => e);
    expect(failureOf(err)).toMatchObject({ code: status.ABORTED, errorCode: 'snapshot_changed' });
    const { secrets, generation } = await agent.sync();
    expect(generation).toBeGreaterThan(page1.generation);
    expect(secrets.size).toBe(APPS * PER_APP);
    expect(secrets.get('ns-7/a7-s3')).toEqual({ v: 'rotated' });
  }, 60_000);

  it('refuses a page token it did not issue, and a later page without its generation', async () => {
    const bad = await agent.desiredStatePage({ generation: 1n, pageToken: 'not-a-token' }).catch((e: unknown) => e);
    expect(failureOf(bad)).toMatchObject({ code: status.INVALID_ARGUMENT, errorCode: 'invalid_page_token' });
    const page1 = await agent.desiredStatePage();
    const noGen = await agent.desiredStatePage({ pageToken: page1.nextPageToken }).catch((e: unknown) => e);
    expect(failureOf(noGen)).toMatchObject({ code: status.INVALID_ARGUMENT, errorCode: 'generation_required' });
  });
});
