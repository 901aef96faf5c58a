import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Redis } from 'ioredis';
import { DataSource } from 'typeorm';
import { SWEEP_INTERVAL_MS } from '../../apps/control-plane/src/agent-api/sync-streams.js';
import { Actor } from '../../apps/control-plane/src/auth/policy.js';
import { ClustersService } from '../../apps/control-plane/src/clusters/clusters.service.js';
import { ClusterEvents } from '../../apps/control-plane/src/events/cluster-events.js';
import { agentEndpoint, startTestApp, type TestApp } from '../harness/app-context.js';
import { enrollAgent, SyncSession, type EnrolledAgent } from '../harness/sync-session.js';
import { testEnv, uniqueName } from '../harness/test-env.js';
import { eventually, holds } from '../harness/eventually.js';

// Redis is not the system of record: a `desired` event on the cluster-events channel only wakes
// a Sync stream, and what the stream sends is the generation and rows PostgreSQL holds. Anyone
// able to publish on Redis (plain pub/sub) can neither announce a generation nor hold one back.

const admin = new Actor('test', 'test-admin', 'admin', null);

describe('Sync sends what PostgreSQL holds, whatever a Redis event says', () => {
  let t: TestApp;
  let ds: DataSource;
  let redis: Redis;
  let agent: EnrolledAgent;
  let channel: string;
  let s: SyncSession;

  const bump = async (id: string) => {
    const [[row]] = await ds.query<[Array<{ g: string }>, number]>(
      'UPDATE clusters SET desired_generation = built_generation + 1, built_generation = built_generation + 1 WHERE id = $1 RETURNING built_generation AS g',
      [id],
    );
    return BigInt(row!.g);
  };

  beforeAll(async () => {
    t = await startTestApp();
    ds = t.app.get(DataSource);
    redis = new Redis(testEnv().redis.url);
    channel = `${t.keyLabelPrefix}:cluster-events`;
    const clusters = t.app.get(ClustersService);
    const name = uniqueName('c');
    await clusters.register(name, {});
    const { address, caPem } = agentEndpoint(t.app);
    agent = await enrollAgent(address, caPem, name, (await clusters.createEnrollmentToken(admin, name)).token);
    // Enrollment's first build: wait until PostgreSQL holds it, then take and acknowledge it.
    await eventually('the first build', async () => {
      const [row] = await ds.query<Array<{ d: string; b: string }>>(
        'SELECT desired_generation AS d, built_generation AS b FROM clusters WHERE id = $1',
        [agent.clusterId],
      );
      return holds(!!row && row.d === row.b && row.b !== '0');
    });
    s = new SyncSession(agent.client, { appliedGeneration: 0n });
    s.ackState(await s.state(1));
  });

  afterAll(async () => {
    s?.cancel();
    agent?.close();
    redis?.disconnect();
    await t?.dispose();
  });

  it('a forged event announces nothing; a real change announced over Redis arrives well before any sweep', async () => {
    const id = agent.clusterId;
    const before = s.states.length;
    // Forged, as another "replica" would send it: well-formed, for a real cluster, with a made-up generation.
    const receivers = await redis.publish(
      channel,
      JSON.stringify({ type: 'desired', clusterIds: [id], generation: '9223372036854775000', origin: 'forged' }),
    );
    expect(receivers).toBeGreaterThanOrEqual(1); // the control plane is listening on this channel

    // A real change, announced after the forged event on the same channel (so handled after it):
    // the first state since is the real one, a delta from what the agent holds.
    const g = await bump(id);
    const announced = Date.now();
    await redis.publish(channel, JSON.stringify({ type: 'desired', clusterIds: [id], origin: 'replica-b' }));
    const delta = await s.until((x) => x.generation === g, 2_000);
    expect(Date.now() - announced).toBeLessThan(Math.min(1_000, SWEEP_INTERVAL_MS));
    expect(delta.baseGeneration).toBe(g - 1n);
    expect(s.states.slice(before)).toEqual([delta]);
    s.ackState(delta);
  });

  it('a flood of forged events cannot hold a generation back; one published here arrives at once', async () => {
    const id = agent.clusterId;
    for (let i = 0; i < 50; i++) await redis.publish(channel, JSON.stringify({ type: 'desired', clusterIds: [id], origin: 'forged' }));
    const g = await bump(id);
    const announced = Date.now();
    await t.app.get(ClusterEvents).publish({ type: 'desired', clusterIds: [id] });
    const got = await s.until((x) => x.generation === g, 2_000);
    expect(Date.now() - announced).toBeLessThan(1_000);
    expect(s.states.every((x) => x.generation <= g)).toBe(true);
    s.ackState(got);
  });

  it('a change with no event at all (lost) still arrives, by the sweep', async () => {
    // The ack above is recorded: the flood and the stream's answers to it are behind us.
    const acked = s.states.at(-1)!.generation;
    await eventually('the last ack recorded', async () => {
      const [row] = await ds.query<Array<{ a: string }>>('SELECT applied_generation::text AS a FROM clusters WHERE id = $1', [
        agent.clusterId,
      ]);
      return holds(row?.a === acked.toString());
    });
    const g = await bump(agent.clusterId);
    // Two sweep intervals: a sweep that began just before the bump, and ran long on a loaded CI
    // machine (the suites share 2 cores), makes the next tick skip; the one after must send it.
    const got = await s.until((x) => x.generation === g, 2 * SWEEP_INTERVAL_MS + 3_000);
    expect(got.baseGeneration).toBe(g - 1n);
  }, 25_000);
});
