import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { openSecretEnvelope, decodeSecretPayload } from '@sigil/envelope';
import { DataSource } from 'typeorm';
import { SyncStreams } from '../../apps/control-plane/src/agent-api/sync-streams.js';
import { Actor } from '../../apps/control-plane/src/auth/policy.js';
import { ClustersService } from '../../apps/control-plane/src/clusters/clusters.service.js';
import { PublicationsService } from '../../apps/control-plane/src/publications/publications.service.js';
import { ClusterEvents } from '../../apps/control-plane/src/events/cluster-events.js';
import { SecretsService } from '../../apps/control-plane/src/secrets/secrets.service.js';
import { agentEndpoint, projectWithApp, startTestApp, type TestApp } from '../harness/app-context.js';
import { deliveryKeys, enrollAgent, SyncSession, type AssembledState, type EnrolledAgent } from '../harness/sync-session.js';
import { uniqueName } from '../harness/test-env.js';
import { eventually, holds } from '../harness/eventually.js';

// The control plane's side of Sync over real mTLS gRPC, PostgreSQL, Redis and SoftHSM, driven
// by a raw client (tests/harness/sync-session.ts) so each test sees exactly what is on the wire.

const admin = new Actor('test', 'test-admin', 'admin', null);
const SECRETS = ['db', 'api', 'tls'];

describe('the Sync stream', () => {
  let t: TestApp;
  let ds: DataSource;
  let streams: SyncStreams;
  const project = uniqueName('p');
  const agents: EnrolledAgent[] = [];
  const sessions: SyncSession[] = [];

  const built = async (id: string) =>
    BigInt((await ds.query<Array<{ b: string }>>('SELECT built_generation AS b FROM clusters WHERE id = $1', [id]))[0]!.b);

  /** A cluster with the app published, enrolled, and its first build done. */
  async function enrolledCluster(): Promise<EnrolledAgent> {
    const clusters = t.app.get(ClustersService);
    const name = uniqueName('c');
    await clusters.register(name, { suite: 'sync' });
    await t.app.get(PublicationsService).publish(admin, project, 'shop', { clusters: [name] });
    const { address, caPem } = agentEndpoint(t.app);
    const a = await enrollAgent(address, caPem, name, (await clusters.createEnrollmentToken(admin, name)).token);
    agents.push(a);
    await eventually(
      'the first build',
      async () =>
        holds(
          (await ds.query<Array<{ n: number }>>('SELECT count(*)::int AS n FROM cluster_secrets WHERE cluster_id = $1', [a.clusterId]))[0]!
            .n >= SECRETS.length,
        ),
      30_000,
    );
    return a;
  }

  /**
   * Resolves once the stream's Hello has been read for (a state read issued after `reads`): what
   * the stream sends from then on is ordered after whatever that read made it send.
   */
  const helloRead = (reads: number) => eventually('the Hello read', () => holds(streams.loader.statements > reads), 5_000, 5);

  /** Builds generation `g` of the cluster and announces it, as a delivery build does. */
  const build = async (clusterId: string, g: bigint) => {
    await ds.query('UPDATE clusters SET desired_generation = $2, built_generation = $2 WHERE id = $1', [clusterId, g.toString()]);
    await t.app.get(ClusterEvents).publish({ type: 'desired', clusterIds: [clusterId] });
  };

  /** A stream with Hello{applied_generation} first (null: no Hello). */
  const open = (a: EnrolledAgent, appliedGeneration: bigint | null = 0n) => {
    const s = new SyncSession(a.client, appliedGeneration === null ? undefined : { appliedGeneration });
    sessions.push(s);
    return s;
  };

  const values = (a: EnrolledAgent, s: AssembledState) => {
    const keys = deliveryKeys(a, s.keyEnvelopes);
    return new Map(
      s.secrets.map((x) => [
        x.secret,
        decodeSecretPayload(openSecretEnvelope(x.envelope, keys, x))
          .get('v')!
          .toString(),
      ]),
    );
  };

  const eventuallyApplied = (clusterId: string, g: bigint) =>
    eventually(`applied_generation ${g}`, async () => {
      const [row] = await ds.query<Array<{ a: string }>>('SELECT applied_generation::text AS a FROM clusters WHERE id = $1', [clusterId]);
      return holds(BigInt(row!.a) === g);
    });

  beforeAll(async () => {
    t = await startTestApp();
    ds = t.app.get(DataSource);
    streams = t.app.get(SyncStreams);
    await projectWithApp(
      t.app,
      admin,
      { project, app: 'shop', namespace: 'shop' },
      Object.fromEntries(SECRETS.map((n) => [n, { v: `${n}-1` }])),
    );
  }, 60_000);

  afterAll(async () => {
    for (const s of sessions) s.cancel();
    for (const a of agents) a.close();
    await t?.dispose();
  });

  it('sends a complete state first, of the generation PostgreSQL built, and it opens', async () => {
    const a = await enrolledCluster();
    const s = open(a);
    const first = await s.state(1);
    expect(first.generation).toBe(await built(a.clusterId));
    expect(first.baseGeneration).toBe(0n);
    expect(first.unchanged).toEqual([]);
    expect(first.secretCount).toBe(SECRETS.length);
    expect(values(a, first)).toEqual(new Map(SECRETS.map((n) => [n, `${n}-1`])));
  });

  it('sends nothing to a Hello at the built generation, and a complete state at the next build', async () => {
    const a = await enrolledCluster();
    const g = await built(a.clusterId);
    // As an agent that applied g and acked it on an earlier stream.
    await ds.query('UPDATE clusters SET applied_generation = $2 WHERE id = $1', [a.clusterId, g.toString()]);
    const reads = streams.loader.statements;
    const s = open(a, g);
    // Accepted all the same: the headers tell the agent it is connected (its readiness).
    await s.accepted;
    await helloRead(reads);
    // The next build: no ack on this stream yet, so it is complete, not a delta. It is the first
    // message: had the Hello been answered with g, that would have come before it.
    await build(a.clusterId, g + 1n);
    const next = await s.state(1, 3_000);
    expect(next).toMatchObject({ generation: g + 1n, baseGeneration: 0n, secretCount: SECRETS.length });
    expect(next.secrets).toHaveLength(SECRETS.length);
    expect(s.messages[0]!.generation).toBe(g + 1n);
  });

  it('sends the state again to a Hello at the built generation that the centre never recorded applied (a lost ack)', async () => {
    const a = await enrolledCluster();
    const g = await built(a.clusterId);
    // As after a replica was killed with the agent's ack still unwritten: the agent holds g, the centre says less.
    await ds.query('UPDATE clusters SET applied_generation = 0 WHERE id = $1', [a.clusterId]);
    const s = open(a, g);
    const again = await s.state(1, 5_000);
    expect(again).toMatchObject({ generation: g, baseGeneration: 0n, secretCount: SECRETS.length });
    s.ackState(again);
    await eventuallyApplied(a.clusterId, g);
    // Recorded now: the next Hello at g hears nothing; the first it hears is the next build.
    s.cancel();
    const reads = streams.loader.statements;
    const quiet = open(a, g);
    await quiet.accepted;
    await helloRead(reads);
    await build(a.clusterId, g + 1n);
    expect((await quiet.state(1, 3_000)).generation).toBe(g + 1n);
    expect(quiet.messages[0]!.generation).toBe(g + 1n);
  });

  it('carries rows marked changed (generation 0, before their build) in full, in complete states and deltas alike', async () => {
    const a = await enrolledCluster();
    const first = await open(a).state(1);
    // As between a rename or a namespace move and the build that re-dates the rows.
    await ds.query('UPDATE cluster_secrets SET generation = 0 WHERE cluster_id = $1', [a.clusterId]);
    const complete = await open(a).state(1);
    expect(complete.baseGeneration).toBe(0n);
    expect(complete.unchanged).toEqual([]);
    expect(complete.secrets).toHaveLength(SECRETS.length);
    const s = open(a);
    s.ackState(await s.state(1));
    await ds.query(
      'UPDATE clusters SET desired_generation = desired_generation + 1, built_generation = built_generation + 1 WHERE id = $1',
      [a.clusterId],
    );
    await t.app.get(ClusterEvents).publish({ type: 'desired', clusterIds: [a.clusterId] });
    const delta = await s.state(2, 5_000);
    expect(delta.baseGeneration).toBe(first.generation);
    expect(delta.unchanged).toEqual([]);
    expect(delta.secrets).toHaveLength(SECRETS.length);
  });

  it('after an ack, sends a delta against it: only the changed row in full, the others by reference', async () => {
    const a = await enrolledCluster();
    const s = open(a);
    const first = await s.state(1);
    s.ackState(first);
    await t.app.get(SecretsService).update(admin, project, 'shop', 'api', { data: { v: 'api-2' } }, undefined);
    const delta = await s.state(2, 15_000);
    expect(delta.generation).toBeGreaterThan(first.generation);
    expect(delta.baseGeneration).toBe(first.generation);
    expect(delta.secrets.map((x) => x.secret)).toEqual(['api']);
    expect(values(a, { ...delta, keyEnvelopes: delta.keyEnvelopes.length ? delta.keyEnvelopes : first.keyEnvelopes })).toEqual(
      new Map([['api', 'api-2']]),
    );
    const unchanged = first.secrets.filter((x) => x.secret !== 'api');
    expect(delta.unchanged.map((u) => [u.secretId, u.version, u.generation]).sort()).toEqual(
      unchanged.map((x) => [x.secretId, x.version, x.generation]).sort(),
    );
    expect(delta.secretCount).toBe(SECRETS.length);
    // A Resync: the complete state of the current generation.
    s.resync();
    const complete = await s.state(3);
    expect(complete).toMatchObject({ generation: delta.generation, baseGeneration: 0n, secretCount: SECRETS.length });
    expect(complete.secrets).toHaveLength(SECRETS.length);
  }, 30_000);

  it('sends no newer generation before the ack, then one send of the newest (coalesced)', async () => {
    const a = await enrolledCluster();
    const s = open(a);
    const first = await s.state(1);
    const g = first.generation;
    // Another cluster's stream marks how far the events went: they arrive in order, so once its
    // build (announced last) reached it, this stream has been told of all three.
    const marker = await enrolledCluster();
    const m = open(marker);
    m.ackState(await m.state(1));
    for (const next of [g + 1n, g + 2n, g + 3n]) await build(a.clusterId, next);
    const mg = (await built(marker.clusterId)) + 1n;
    await build(marker.clusterId, mg);
    await m.until((x) => x.generation === mg, 3_000);
    expect(s.states).toHaveLength(1);
    // The ack: the next message is the newest generation, as a delta, not g + 1 or g + 2.
    s.ackState(first);
    const coalesced = await s.state(2, 3_000);
    expect(coalesced).toMatchObject({ generation: g + 3n, baseGeneration: g, secrets: [] });
    expect(coalesced.unchanged).toHaveLength(SECRETS.length);
    // Sent once: after its ack, the next message is the next build, not g + 3 again.
    s.ackState(coalesced);
    await build(a.clusterId, g + 4n);
    expect(await s.state(3, 3_000)).toMatchObject({ generation: g + 4n, baseGeneration: g + 3n });
  });

  it('serves one desired event for many clusters with one read, and writes their acks in few statements', async () => {
    const many = await Promise.all(Array.from({ length: 12 }, () => enrolledCluster()));
    const ss = many.map((a) => open(a));
    const firsts = await Promise.all(ss.map((s) => s.state(1)));
    firsts.forEach((f, i) => ss[i]!.ackState(f));
    const ids = many.map((a) => a.clusterId);
    await eventually('acks written', async () => {
      const rows = await ds.query<Array<{ ok: boolean }>>(
        'SELECT applied_generation = built_generation AS ok FROM clusters WHERE id = ANY($1::uuid[])',
        [ids],
      );
      return holds(rows.every((r) => r.ok));
    });
    await ds.query(
      'UPDATE clusters SET desired_generation = built_generation + 1, built_generation = built_generation + 1 WHERE id = ANY($1::uuid[])',
      [ids],
    );
    const reads = streams.loader.statements;
    await t.app.get(ClusterEvents).publish({ type: 'desired', clusterIds: ids });
    const deltas = await Promise.all(ss.map((s) => s.state(2, 3_000)));
    expect(streams.loader.statements - reads).toBe(1);
    deltas.forEach((d, i) => expect(d).toMatchObject({ generation: firsts[i]!.generation + 1n, baseGeneration: firsts[i]!.generation }));
    const writes = streams.writer.statements;
    deltas.forEach((d, i) => ss[i]!.ackState(d));
    await eventually(
      'acks recorded',
      async () => {
        const rows = await ds.query<Array<{ ok: boolean }>>(
          'SELECT applied_generation = built_generation AS ok FROM clusters WHERE id = ANY($1::uuid[])',
          [ids],
        );
        return holds(rows.every((r) => r.ok));
      },
      3_000,
      20,
    );
    expect(streams.writer.statements - writes).toBeLessThanOrEqual(2);
  }, 60_000);

  it('refuses a stream whose first message is not a Hello, and a second Hello', async () => {
    const a = await enrolledCluster();
    const noHello = open(a, null);
    noHello.ack(1n);
    expect(await noHello.ended).toMatchObject({ code: status.INVALID_ARGUMENT, errorCode: 'hello_expected' });
    const twice = open(a);
    await twice.state(1);
    twice.send({ message: { $case: 'hello', value: { appliedGeneration: 0n, agentVersion: 'x' } } });
    expect(await twice.ended).toMatchObject({ code: status.INVALID_ARGUMENT, errorCode: 'unexpected_hello' });
  });

  it('refuses an ack of a generation it never sent, and records nothing beyond what was built', async () => {
    const a = await enrolledCluster();
    const s = open(a);
    const first = await s.state(1);
    s.ack(first.generation + 5n);
    expect(await s.ended).toMatchObject({ code: status.INVALID_ARGUMENT, errorCode: 'unexpected_generation' });
    // A Hello claiming a future generation, then statuses "at" it: never recorded beyond the build.
    const writes = streams.writer.statements;
    const liar = open(a, first.generation + 100n);
    expect((await liar.state(1)).baseGeneration).toBe(0n);
    // The Hello's own report (its agent version) is written after anything the refused ack could have queued.
    await eventually('the Hello report written', () => holds(streams.writer.statements > writes), 5_000, 5);
    const [row] = await ds.query<Array<{ a: string }>>('SELECT applied_generation::text AS a FROM clusters WHERE id = $1', [a.clusterId]);
    expect(BigInt(row!.a)).toBeLessThanOrEqual(first.generation);
  });
});
