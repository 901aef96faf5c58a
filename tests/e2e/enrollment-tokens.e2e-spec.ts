import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { status } from '@grpc/grpc-js';
import type { ApiClient } from '../harness/api-client.js';
import { startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import { uniqueName } from '../harness/test-env.js';
import { TestAgent, refused } from '../harness/test-agent.js';

// Bootstrap enrollment tokens after they were shown: an admin lists them (metadata only) and
// revokes one, after which an Enroll with it fails like one with an unknown token.

describe('listing and revoking enrollment tokens', () => {
  let cp: RunningControlPlane;
  let caPem: string;
  let operator: ApiClient;
  /** The admin token's name, as tokens and audit records name their creator. */
  let admin: string;
  const agents: TestAgent[] = [];

  const agentFor = (cluster: string) => {
    const a = new TestAgent(cp.cp.grpcAddress, caPem, cluster);
    agents.push(a);
    return a;
  };

  beforeAll(async () => {
    cp = await startControlPlane();
    caPem = (await cp.admin.get<{ caCertificatePem: string }>('/agents/trust')).body.caCertificatePem;
    const t = await cp.admin.post('/tokens', { name: 'operator-all', role: 'operator' });
    expect(t.status).toBe(201);
    operator = cp.admin.as(t.body.token);
    admin = (await cp.admin.get<{ items: Array<{ actor: string }> }>('/audit?action=token.create')).body.items[0]!.actor;
  });

  afterAll(async () => {
    for (const a of agents) a.close();
    await cp?.stop();
  });

  it('lists a cluster’s tokens with metadata only; a revoked token no longer enrolls; both are audited', async () => {
    const cluster = uniqueName('c');
    expect((await cp.admin.post('/clusters', { name: cluster })).status).toBe(201);
    const made = [];
    for (let i = 0; i < 3; i++) {
      const r = await cp.admin.post(`/clusters/${cluster}/enrollment-tokens`, { ttlSeconds: 600 });
      expect(r.status).toBe(201);
      made.push(r.body as { id: string; token: string });
    }
    const [used, revoked, kept] = made as [(typeof made)[0], (typeof made)[0], (typeof made)[0]];
    await agentFor(cluster).enroll({ $case: 'bootstrapToken', value: used.token });

    const list = await cp.admin.get(`/clusters/${cluster}/enrollment-tokens`);
    expect(list.status).toBe(200);
    expect(list.body.items.map((t: { id: string }) => t.id)).toEqual([kept.id, revoked.id, used.id]);
    for (const t of list.body.items) {
      expect(Object.keys(t).sort()).toEqual(['createdAt', 'createdBy', 'expiresAt', 'id', 'state', 'usedAt']);
      expect(t.createdBy).toBe(admin);
    }
    expect(list.body.items.find((t: { id: string }) => t.id === used.id)).toMatchObject({ state: 'used', usedAt: expect.any(String) });
    expect(list.body.items.find((t: { id: string }) => t.id === kept.id)).toMatchObject({ state: 'unused', usedAt: null });
    for (const t of made) expect(list.text).not.toContain(t.token);
    expect(list.text).not.toMatch(/hash/i);

    expect((await cp.admin.delete(`/clusters/${cluster}/enrollment-tokens/${revoked.id}`)).status).toBe(204);
    expect(await refused(agentFor(cluster).enroll({ $case: 'bootstrapToken', value: revoked.token }))).toMatchObject({
      code: status.UNAUTHENTICATED,
      errorCode: 'enrollment_token_invalid',
    });
    const after = await cp.admin.get(`/clusters/${cluster}/enrollment-tokens`);
    expect(after.body.items.map((t: { id: string }) => t.id)).toEqual([kept.id, used.id]);
    // The other unused token still works.
    await agentFor(cluster).enroll({ $case: 'bootstrapToken', value: kept.token });

    const again = await cp.admin.delete(`/clusters/${cluster}/enrollment-tokens/${revoked.id}`);
    expect([again.status, again.body.code]).toEqual([404, 'enrollment_token_not_found']);
    const audit = await cp.admin.get('/audit?action=cluster.enrollment-token.revoke');
    expect(audit.body.items.filter((e: { outcome: string }) => e.outcome === 'success')).toEqual([
      expect.objectContaining({ target: `cluster=${cluster} id=${revoked.id}`, actor: admin }),
    ]);
  });

  it('a token of another cluster cannot be revoked through this one, and nonsense ids are 404', async () => {
    const [a, b] = [uniqueName('c'), uniqueName('c')];
    for (const name of [a, b]) expect((await cp.admin.post('/clusters', { name })).status).toBe(201);
    const t = (await cp.admin.post(`/clusters/${b}/enrollment-tokens`)).body as { id: string; token: string };
    for (const id of [t.id, 'not-a-uuid', '00000000-0000-0000-0000-000000000000']) {
      const r = await cp.admin.delete(`/clusters/${a}/enrollment-tokens/${id}`);
      expect([r.status, r.body.code]).toEqual([404, 'enrollment_token_not_found']);
    }
    expect((await cp.admin.get('/clusters/nope-404/enrollment-tokens')).status).toBe(404);
    await agentFor(b).enroll({ $case: 'bootstrapToken', value: t.token });
  });

  it('needs the same role as creating one: an operator may neither list nor revoke', async () => {
    const cluster = uniqueName('c');
    expect((await cp.admin.post('/clusters', { name: cluster })).status).toBe(201);
    const t = (await cp.admin.post(`/clusters/${cluster}/enrollment-tokens`)).body as { id: string; token: string };
    expect((await operator.get(`/clusters/${cluster}/enrollment-tokens`)).status).toBe(403);
    expect((await operator.delete(`/clusters/${cluster}/enrollment-tokens/${t.id}`)).status).toBe(403);
    await agentFor(cluster).enroll({ $case: 'bootstrapToken', value: t.token });
  });

  it('tokens live at most 24 hours (default 1 hour)', async () => {
    const cluster = uniqueName('c');
    expect((await cp.admin.post('/clusters', { name: cluster })).status).toBe(201);
    const tooLong = await cp.admin.post(`/clusters/${cluster}/enrollment-tokens`, { ttlSeconds: 24 * 3600 + 1 });
    expect(tooLong.status).toBe(400);
    const byDefault = await cp.admin.post(`/clusters/${cluster}/enrollment-tokens`);
    expect(new Date(byDefault.body.expiresAt).getTime() - Date.now()).toBeLessThanOrEqual(3600_000);
    const max = await cp.admin.post(`/clusters/${cluster}/enrollment-tokens`, { ttlSeconds: 24 * 3600 });
    expect(max.status).toBe(201);
  });

  it('documents both operations in the OpenAPI document', async () => {
    const doc = (await (await fetch(`${cp.cp.url}/api/docs-json`)).json()) as { paths: Record<string, Record<string, unknown>> };
    expect(Object.keys(doc.paths['/api/v1/clusters/{cluster}/enrollment-tokens']!)).toEqual(expect.arrayContaining(['get', 'post']));
    expect(Object.keys(doc.paths['/api/v1/clusters/{cluster}/enrollment-tokens/{id}']!)).toEqual(['delete']);
  });
});
