import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { status } from '@grpc/grpc-js';
import type { ApiClient } from '../harness/api-client.js';
import type { ControlPlaneProcess } from '../harness/control-plane-process.js';
import { startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import { uniqueName } from '../harness/test-env.js';
import { failureOf, TestAgent } from '../harness/test-agent.js';

// Two control-plane processes on one PostgreSQL and Redis: the operator talks to replica A, the
// agent to replica B. A disable on A reaches B's stream through Redis pub/sub.

describe('agent access across replicas', () => {
  let a: RunningControlPlane;
  let b: { cp: ControlPlaneProcess; admin: ApiClient };
  let caPem: string;

  beforeAll(async () => {
    a = await startControlPlane();
    b = await a.startReplica();
    caPem = (await b.admin.get<{ caCertificatePem: string }>('/agents/trust')).body.caCertificatePem;
  });

  afterAll(async () => {
    await a?.stop();
  });

  it('an agent on replica B is cut off within 1 s by a disable on replica A, let back by enable, and refused after delete', async () => {
    const name = uniqueName('r');
    expect((await a.admin.post('/clusters', { name })).status).toBe(201);
    const token = (await a.admin.post<{ token: string }>(`/clusters/${name}/enrollment-tokens`)).body.token;
    const agent = new TestAgent(b.cp.grpcAddress, caPem, name);
    try {
      await agent.enroll({ $case: 'bootstrapToken', value: token });
      expect((await a.admin.get<{ state: string; agentVersion: string }>(`/clusters/${name}`)).body).toMatchObject({
        state: 'enrolled',
        agentVersion: 'test-agent/1',
      });
      const watch = agent.open();
      await watch.waitFor((g) => g.length >= 1);

      const started = Date.now();
      expect((await a.admin.post(`/clusters/${name}/disable`)).status).toBe(200);
      expect(await watch.ended).toMatchObject({ code: status.PERMISSION_DENIED, errorCode: 'access_revoked' });
      expect(Date.now() - started).toBeLessThan(1_000);
      expect(failureOf(await agent.desiredState().catch((e: unknown) => e))).toMatchObject({ code: status.PERMISSION_DENIED });

      expect((await a.admin.post(`/clusters/${name}/enable`)).status).toBe(200);
      expect((await agent.desiredState()).clusterKeyEnvelopes.length).toBeGreaterThan(0);

      expect((await a.admin.delete(`/clusters/${name}`)).status).toBe(204);
      expect(failureOf(await agent.desiredState().catch((e: unknown) => e))).toMatchObject({
        code: status.UNAUTHENTICATED,
        errorCode: 'cluster_not_found',
      });
    } finally {
      agent.close();
    }
  });
});
