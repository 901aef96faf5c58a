import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Redis } from 'ioredis';
import { DataSource } from 'typeorm';
import { Actor } from '../../apps/control-plane/src/auth/policy.js';
import { ClustersService } from '../../apps/control-plane/src/clusters/clusters.service.js';
import { ClusterEvents } from '../../apps/control-plane/src/events/cluster-events.js';
import { SWEEP_INTERVAL_MS } from '../../apps/control-plane/src/agent-api/watch-streams.js';
import { agentEndpoint, startTestApp, type TestApp } from '../harness/app-context.js';
import { testEnv, uniqueName } from '../harness/test-env.js';
import { TestAgent } from '../harness/test-agent.js';

// Redis is not the system of record: an event on the cluster-events channel is a hint, and the
// generation pushed to a Watch stream is the one PostgreSQL holds. Anyone able to publish on
// Redis (the channel is plain pub/sub) must not be able to freeze a cluster's pushes.

const admin = new Actor('test', 'test-admin', 'admin', null);

describe('Watch pushes trust PostgreSQL, not the generation in a Redis event', () => {
  let t: TestApp;
  let ds: DataSource;
  let redis: Redis;
  let agent: TestAgent;
  let channel: string;

  beforeAll(async () => {
    t = await startTestApp();
    ds = t.app.get(DataSource);
    redis = new Redis(testEnv().redis.url);
    channel = `${t.keyLabelPrefix}:cluster-events`;
    const clusters = t.app.get(ClustersService);
    const name = uniqueName('c');
    await clusters.register(name, {});
    const { address, caPem } = agentEndpoint(t.app);
    agent = new TestAgent(address, caPem, name);
    await agent.enroll({ $case: 'bootstrapToken', value: (await clusters.createEnrollmentToken(admin, name)).token });
  });

  afterAll(async () => {
    agent?.close();
    redis?.disconnect();
    await t?.dispose();
  });

  it('a forged event with a huge generation is not pushed, and real publishes still reach the stream promptly', async () => {
    const id = agent.enrollment!.clusterId;
    const w = agent.watch();
    await w.waitFor((g) => g.length >= 1);
    // Enrollment's first build may still be pushing: start once PostgreSQL and the stream agree.
    let start = -1n;
    for (const until = Date.now() + 10_000; start < 0n && Date.now() < until; await new Promise((r) => setTimeout(r, 100))) {
      const [row] = await ds.query<Array<{ d: string; b: string }>>(
        'SELECT desired_generation AS d, built_generation AS b FROM clusters WHERE id = $1',
        [id],
      );
      if (row && row.d === row.b && w.generations.at(-1) === BigInt(row.b)) start = BigInt(row.b);
    }
    expect(start).toBeGreaterThanOrEqual(0n);

    // Forged, as another "replica" would send it: well-formed, for a real cluster, absurd generation.
    const receivers = await redis.publish(
      channel,
      JSON.stringify({ type: 'desired', clusterIds: [id], generation: '9223372036854775000', origin: 'forged' }),
    );
    expect(receivers).toBeGreaterThanOrEqual(1); // the control plane is listening on this channel
    await new Promise((r) => setTimeout(r, 300));
    expect(w.generations.every((g) => g <= start)).toBe(true);

    // A real change, announced by another replica over Redis: pushed well before any sweep.
    await ds.query('UPDATE clusters SET desired_generation = $2, built_generation = $2 WHERE id = $1', [id, (start + 1n).toString()]);
    let announced = Date.now();
    await redis.publish(
      channel,
      JSON.stringify({ type: 'desired', clusterIds: [id], generation: (start + 1n).toString(), origin: 'replica-b' }),
    );
    await w.waitFor((g) => g.includes(start + 1n), 2_000);
    expect(Date.now() - announced).toBeLessThan(Math.min(1_000, SWEEP_INTERVAL_MS));

    // And one published on this replica.
    await ds.query('UPDATE clusters SET desired_generation = $2, built_generation = $2 WHERE id = $1', [id, (start + 2n).toString()]);
    announced = Date.now();
    await t.app.get(ClusterEvents).publish({ type: 'desired', clusterIds: [id] });
    await w.waitFor((g) => g.includes(start + 2n), 2_000);
    expect(Date.now() - announced).toBeLessThan(1_000);
    expect(w.generations.every((g) => g <= start + 2n)).toBe(true);
    w.cancel();
  });

  it('an event ahead of PostgreSQL pushes what PostgreSQL holds, not the event’s number', async () => {
    const id = agent.enrollment!.clusterId;
    const w = agent.watch();
    await w.waitFor((g) => g.length >= 1);
    const start = w.generations.at(-1)!;
    await ds.query('UPDATE clusters SET desired_generation = $2, built_generation = $2 WHERE id = $1', [id, (start + 1n).toString()]);
    await redis.publish(
      channel,
      JSON.stringify({ type: 'desired', clusterIds: [id], generation: (start + 50n).toString(), origin: 'forged' }),
    );
    await w.waitFor((g) => g.includes(start + 1n), 2_000);
    await new Promise((r) => setTimeout(r, 200));
    expect(w.generations.at(-1)).toBe(start + 1n);
    w.cancel();
  });
});
