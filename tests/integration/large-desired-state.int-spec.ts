import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { DESIRED_STATE_PAGE_BYTES, MAX_AGENT_MESSAGE_BYTES, SyncResponse } from '@sigil/agent-protocol';
import { decodeSecretPayload, encodeSecretPayload, openSecretEnvelope } from '@sigil/envelope';
import { DataSource } from 'typeorm';
import { AppsService } from '../../apps/control-plane/src/apps/apps.service.js';
import { Actor } from '../../apps/control-plane/src/auth/policy.js';
import { ClustersService } from '../../apps/control-plane/src/clusters/clusters.service.js';
import { PublicationsService } from '../../apps/control-plane/src/publications/publications.service.js';
import { SealedValueService } from '../../apps/control-plane/src/keys/sealed-values.service.js';
import { ProjectsService } from '../../apps/control-plane/src/projects/projects.service.js';
import { SecretsService } from '../../apps/control-plane/src/secrets/secrets.service.js';
import { agentEndpoint, startTestApp, type TestApp } from '../harness/app-context.js';
import { deliveryKeys, enrollAgent, SyncSession, type AssembledState, type EnrolledAgent } from '../harness/sync-session.js';
import { uniqueName } from '../harness/test-env.js';
import { eventually, holds } from '../harness/eventually.js';

// A cluster's desired state far above any single gRPC message: 100 apps × 50 secrets, five of
// them 1 MiB, reaches one agent over real mTLS gRPC on its Sync stream, part by part, and opens
// completely; a generation built while its parts are being sent replaces it from part 0.
// The bulk is sealed by the real HSM in batches and inserted in a few statements (creating
// 5,000 secrets one by one would take minutes); the 1 MiB ones go through SecretsService.

const admin = new Actor('00000000-0000-4000-8000-000000000001', 'test-admin', 'admin', null);
const APPS = 100;
const PER_APP = 50;
const BIG = 5;
const MiB = 1024 * 1024;

describe('a desired state of 5,000 secrets and 1 MiB values', () => {
  let t: TestApp;
  let agent: EnrolledAgent;
  let s: SyncSession;
  let first: AssembledState;
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
    agent = await enrollAgent(address, caPem, cluster, (await clusters.createEnrollmentToken(admin, cluster)).token);
    // Until the build has caught up with every publish.
    await eventually(
      `${APPS * PER_APP} secrets built`,
      async () => {
        const [row] = await ds.query<Array<{ n: number; settled: boolean }>>(
          `SELECT (SELECT count(*)::int FROM cluster_secrets WHERE cluster_id = c.id) AS n, c.built_generation = c.desired_generation AS settled
             FROM clusters c WHERE c.id = $1`,
          [agent.clusterId],
        );
        return holds(row?.n === APPS * PER_APP && row.settled);
      },
      90_000,
      500,
    );
  }, 240_000);

  afterAll(async () => {
    s?.cancel();
    agent?.close();
    await t?.dispose();
  });

  const open = (st: AssembledState) => {
    const keys = deliveryKeys(agent, st.keyEnvelopes);
    return new Map<string, Buffer>(
      st.secrets.map(
        (x) =>
          [`${x.target!.namespace}/${x.target!.name}`, decodeSecretPayload(openSecretEnvelope(x.envelope, keys, x)).get('v')!] as const,
      ),
    );
  };

  it('sends all of it as one complete state in parts under the message limit, and every envelope opens', async () => {
    s = new SyncSession(agent.client, { appliedGeneration: 0n });
    first = await s.state(1, 60_000);
    expect(first.baseGeneration).toBe(0n);
    expect(first.secretCount).toBe(APPS * PER_APP);
    expect(first.secrets).toHaveLength(APPS * PER_APP);
    expect(first.parts.map((p) => p.part)).toEqual(first.parts.map((_, i) => i));
    expect(first.parts.map((p) => p.more)).toEqual(first.parts.map((_, i) => i < first.parts.length - 1));
    expect(first.parts.slice(1).every((p) => p.clusterKeyEnvelopes.length === 0)).toBe(true);
    let total = 0;
    for (const p of first.parts) {
      const bytes = SyncResponse.encode({ message: { $case: 'desiredState', value: p } }).finish().length;
      expect(bytes).toBeLessThanOrEqual(DESIRED_STATE_PAGE_BYTES + 64 * 1024);
      expect(bytes).toBeLessThan(MAX_AGENT_MESSAGE_BYTES);
      total += bytes;
    }
    expect(total).toBeGreaterThan(4 * MiB + 2 * MiB);
    expect(first.parts.length).toBeGreaterThanOrEqual(4);
    const values = open(first);
    // Every value arrived as written, the random 1 MiB ones byte for byte.
    const wrong = [...expected].filter(([k, v]) => !values.get(k)?.equals(v));
    expect(wrong.map(([k]) => k)).toEqual([]);
  }, 90_000);

  it('after the ack, a rotation arrives as a delta: one secret in full, the other 4,999 by reference', async () => {
    s.ackState(first);
    await t.app.get(SecretsService).update(admin, project, 'a7', 'a7-s3', { data: { v: 'rotated' } }, undefined);
    const delta = await s.state(2, 30_000);
    expect(delta.baseGeneration).toBe(first.generation);
    expect(delta.secrets.map((x) => x.secret)).toEqual(['a7-s3']);
    expect(delta.unchanged).toHaveLength(APPS * PER_APP - 1);
    expect(delta.secretCount).toBe(APPS * PER_APP);
    expect(
      open({ ...delta, keyEnvelopes: first.keyEnvelopes })
        .get('ns-7/a7-s3')!
        .toString(),
    ).toBe('rotated');
    s.ackState(delta);
  }, 60_000);

  it('a generation built while a state is being sent replaces it from part 0; the old one never completes', async () => {
    const ds = t.app.get(DataSource);
    // A new stream (so a complete state), read one part at a time.
    s.cancel();
    s = new SyncSession(agent.client, { appliedGeneration: 0n });
    await eventually('a first part', () => holds(s.messages.length > 0), 10_000, 5);
    s.pause();
    const g = s.messages[0]!.generation;
    await ds.query('UPDATE clusters SET desired_generation = built_generation + 1, built_generation = built_generation + 1 WHERE id = $1', [
      agent.clusterId,
    ]);
    s.resume();
    const st = await s.state(1, 60_000);
    expect(st.generation).toBe(g + 1n);
    expect(st.parts[0]!.part).toBe(0);
    expect(st.secrets).toHaveLength(APPS * PER_APP);
    const ofOld = s.messages.filter((m) => m.generation === g);
    expect(ofOld.length).toBeGreaterThanOrEqual(1);
    expect(ofOld.every((m) => m.more)).toBe(true); // the old sequence was abandoned, not finished
  }, 90_000);
});
