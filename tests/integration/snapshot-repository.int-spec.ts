import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { CONSUMER_OVERHEAD_BYTES } from '@sigil/agent-protocol';
import { decodeSecretPayload, encodeSecretEnvelope, openSecretEnvelope } from '@sigil/envelope';
import { DataSource } from 'typeorm';
import { Actor } from '../../apps/control-plane/src/auth/policy.js';
import { ClustersService } from '../../apps/control-plane/src/clusters/clusters.service.js';
import { PublicationsService } from '../../apps/control-plane/src/publications/publications.service.js';
import { SnapshotRepository, type ClusterState, type SnapshotRow } from '../../apps/control-plane/src/agent-api/snapshot.repository.js';
import { agentEndpoint, projectWithApp, startTestApp, type TestApp } from '../harness/app-context.js';
import { eventually, holds } from '../harness/eventually.js';
import { deliveryKeys, enrollAgent, type EnrolledAgent } from '../harness/sync-session.js';
import { uniqueName } from '../harness/test-env.js';

// SnapshotRepository's statements on a real PostgreSQL, against snapshots the control plane
// itself built (secrets written and published through the services, clusters enrolled over
// gRPC, the delivery job run by the worker): states(), snapshotPage() and writeReports().

const admin = new Actor('test', 'test-admin', 'admin', null);
const SECRETS = ['alpha', 'bravo', 'charlie'];
const OVERHEAD = 100;

describe('SnapshotRepository on PostgreSQL', () => {
  let t: TestApp;
  let ds: DataSource;
  let repo: SnapshotRepository;
  const project = uniqueName('p');
  const agents: EnrolledAgent[] = [];
  let a: EnrolledAgent;
  let b: EnrolledAgent;
  let c: EnrolledAgent;

  const cluster = async (id: string) =>
    (
      await ds.query<Array<{ built: string; applied: string; agentVersion: string | null }>>(
        'SELECT built_generation::text AS built, applied_generation::text AS applied, agent_version AS "agentVersion" FROM clusters WHERE id = $1',
        [id],
      )
    )[0]!;
  const built = async (id: string) => BigInt((await cluster(id)).built);
  /** What the bodies of a cluster's rows weigh in a read: ciphertext plus the per-row overhead. */
  const bytesOf = async (id: string) =>
    (
      await ds.query<Array<{ n: number }>>(
        `SELECT sum(octet_length(sv.ciphertext) + $2)::int AS n FROM cluster_secrets cs JOIN sealed_values sv ON sv.id = cs.sealed_value_id
          WHERE cs.cluster_id = $1`,
        [id, OVERHEAD],
      )
    )[0]!.n;
  const full = (s: ClusterState | undefined) => {
    if (s?.kind !== 'full') throw new Error(`expected a full state, got ${s?.kind}`);
    return s;
  };
  /** The value an agent would get out of a row's body, with the delivery keys of the state. */
  const valueOf = (agent: EnrolledAgent, keyEnvelopes: Buffer[], row: SnapshotRow) => {
    const keys = deliveryKeys(agent, keyEnvelopes);
    const body = row.body!;
    const envelope = encodeSecretEnvelope({
      clusterKeyVersion: body.clusterKeyVersion,
      wrappedDek: body.wrappedDek,
      iv: body.iv,
      ciphertext: body.ciphertext,
    });
    const ctx = { projectId: body.projectId, app: body.app, secret: body.secret, secretId: row.secretId, version: row.version };
    return decodeSecretPayload(openSecretEnvelope(envelope, keys, ctx))
      .get('v')!
      .toString();
  };

  beforeAll(async () => {
    t = await startTestApp();
    ds = t.app.get(DataSource);
    repo = t.app.get(SnapshotRepository);
    await projectWithApp(
      t.app,
      admin,
      { project, app: 'shop', namespace: 'shop' },
      Object.fromEntries(SECRETS.map((n) => [n, { v: `${n}-value-`.repeat(8) }])),
    );
    const clusters = t.app.get(ClustersService);
    const { address, caPem } = agentEndpoint(t.app);
    const names = [uniqueName('a'), uniqueName('b'), uniqueName('c')];
    for (const n of names) await clusters.register(n, {});
    await t.app.get(PublicationsService).publish(admin, project, 'shop', { clusters: names });
    for (const n of names) agents.push(await enrollAgent(address, caPem, n, (await clusters.createEnrollmentToken(admin, n)).token));
    [a, b, c] = agents as [EnrolledAgent, EnrolledAgent, EnrolledAgent];
    await eventually(
      'every snapshot built',
      async () => {
        const rows = await ds.query<Array<{ n: number }>>(
          `SELECT count(*)::int AS n FROM clusters cl WHERE cl.id = ANY($1::uuid[]) AND cl.built_generation = cl.desired_generation
              AND (SELECT count(*) FROM cluster_secrets cs WHERE cs.cluster_id = cl.id) = $2`,
          [agents.map((x) => x.clusterId), SECRETS.length],
        );
        return holds(rows[0]!.n === agents.length);
      },
      30_000,
    );
  }, 60_000);

  afterAll(async () => {
    for (const x of agents) x.close();
    await t?.dispose();
  });

  describe('states()', () => {
    it('reads a complete state: the built generation, the delivery-key envelope, every row with a body that opens', async () => {
      const [state] = await repo.states([{ clusterId: a.clusterId, base: 0n }], 1 << 20, 1 << 20, OVERHEAD);
      const s = full(state);
      expect(s.generation).toBe(await built(a.clusterId));
      const active = await ds.query<Array<{ envelope: Buffer }>>(
        "SELECT agent_envelope AS envelope FROM cluster_keys WHERE cluster_id = $1 AND state = 'active'",
        [a.clusterId],
      );
      expect(s.keyEnvelopes).toEqual(active.map((k) => k.envelope));
      expect(s.keyEnvelopes).toHaveLength(1);
      expect(s.rows.map((r) => r.secretId)).toEqual([...s.rows.map((r) => r.secretId)].sort());
      expect(s.rows.map((r) => r.body?.secret).sort()).toEqual(SECRETS);
      for (const r of s.rows) {
        expect(r.body).toMatchObject({ type: 'Opaque', app: 'shop', namespace: 'shop', deliveryMode: 'env', clusterKeyVersion: 1 });
        expect(valueOf(a, s.keyEnvelopes, r)).toBe(`${r.body!.secret}-value-`.repeat(8));
      }
    });

    it('sends rows unchanged since the base by reference, and rows marked changed (generation 0) in full', async () => {
      const g = await built(a.clusterId);
      const since = full((await repo.states([{ clusterId: a.clusterId, base: g }], 1 << 20, 1 << 20, OVERHEAD))[0]);
      expect(since.rows).toHaveLength(SECRETS.length);
      expect(since.rows.every((r) => r.body === undefined)).toBe(true);

      const [marked] = since.rows;
      await ds.query('UPDATE cluster_secrets SET generation = 0 WHERE cluster_id = $1 AND secret_id = $2', [a.clusterId, marked!.secretId]);
      try {
        const again = full((await repo.states([{ clusterId: a.clusterId, base: g }], 1 << 20, 1 << 20, OVERHEAD))[0]);
        expect(again.rows.filter((r) => r.body).map((r) => r.secretId)).toEqual([marked!.secretId]);
      } finally {
        await ds.query('UPDATE cluster_secrets SET generation = $3 WHERE cluster_id = $1 AND secret_id = $2', [
          a.clusterId,
          marked!.secretId,
          marked!.generation,
        ]);
      }
    });

    it('reads nothing for the generation the agent holds; after a Hello only once the centre recorded it applied', async () => {
      const g = await built(b.clusterId);
      await ds.query('UPDATE clusters SET applied_generation = 0 WHERE id = $1', [b.clusterId]);
      const read = (hello: boolean) => repo.states([{ clusterId: b.clusterId, base: 0n, unless: g, hello }], 1 << 20, 1 << 20, OVERHEAD);
      expect(await read(false)).toEqual([{ clusterId: b.clusterId, kind: 'current', generation: g }]);
      // A lost ack: the agent says it holds g, the centre never recorded it. Send it again.
      expect(full((await read(true))[0]).rows).toHaveLength(SECRETS.length);
      await ds.query('UPDATE clusters SET applied_generation = $2 WHERE id = $1', [b.clusterId, g.toString()]);
      expect(await read(true)).toEqual([{ clusterId: b.clusterId, kind: 'current', generation: g }]);
    });

    it('bounds memory: a cluster over its budget is paged; past the read budget the rest wait; the first one is always served', async () => {
      const [ga, gb] = [await built(a.clusterId), await built(b.clusterId)];
      const bytes = await bytesOf(a.clusterId);
      expect(await repo.states([{ clusterId: a.clusterId, base: 0n }], bytes - 1, 1 << 20, OVERHEAD)).toEqual([
        { clusterId: a.clusterId, kind: 'paged', generation: ga },
      ]);
      const both = [
        { clusterId: a.clusterId, base: 0n },
        { clusterId: b.clusterId, base: 0n },
      ];
      const exact = await repo.states(both, 1 << 20, bytes, OVERHEAD);
      expect(exact.map((s) => [s.clusterId, s.kind])).toEqual([
        [a.clusterId, 'full'],
        [b.clusterId, 'deferred'],
      ]);
      expect(exact[1]).toEqual({ clusterId: b.clusterId, kind: 'deferred', generation: gb });
      // A read budget smaller than the first cluster still serves it: every read makes progress.
      expect((await repo.states(both, 1 << 20, 1, OVERHEAD)).map((s) => s.kind)).toEqual(['full', 'deferred']);
      // Request order decides who is first.
      expect((await repo.states([...both].reverse(), 1 << 20, bytes, OVERHEAD)).map((s) => [s.clusterId, s.kind])).toEqual([
        [b.clusterId, 'full'],
        [a.clusterId, 'deferred'],
      ]);
    });

    it('leaves out clusters that do not exist, and reads nothing for no request', async () => {
      const states = await repo.states(
        [
          { clusterId: '00000000-0000-4000-8000-00000000dead', base: 0n },
          { clusterId: a.clusterId, base: 0n },
        ],
        1 << 20,
        1 << 20,
        OVERHEAD,
      );
      expect(states.map((s) => s.clusterId)).toEqual([a.clusterId]);
      expect(await repo.states([], 1, 1, OVERHEAD)).toEqual([]);
    });
  });

  describe('snapshotPage()', () => {
    it('pages by secret id within the budget, at least one row a page, until no next', async () => {
      const g = await built(a.clusterId);
      const pages: Array<Awaited<ReturnType<SnapshotRepository['snapshotPage']>>> = [];
      let after: string | undefined;
      do {
        const page = await repo.snapshotPage(a.clusterId, after, 0n, 1, OVERHEAD, 10); // 1 byte: one row a page
        pages.push(page);
        after = page.next;
      } while (after && pages.length <= SECRETS.length);
      expect(pages.map((p) => p.rows.length)).toEqual(SECRETS.map(() => 1));
      expect(pages.at(-1)!.next).toBeUndefined();
      const rows = pages.flatMap((p) => p.rows);
      expect(rows.map((r) => r.secretId)).toEqual([...rows.map((r) => r.secretId)].sort());
      const complete = full((await repo.states([{ clusterId: a.clusterId, base: 0n }], 1 << 20, 1 << 20, OVERHEAD))[0]);
      expect(rows).toEqual(complete.rows);
      for (const p of pages) expect([p.generation, p.keyEnvelopes]).toEqual([g, complete.keyEnvelopes]);
    });

    it('counts rows unchanged since the base at their reference size, and sends them without a body', async () => {
      const g = await built(a.clusterId);
      const bytes = await bytesOf(a.clusterId);
      // Bodies would not fit in `bytes - 1`; references (10 bytes each) do.
      const page = await repo.snapshotPage(a.clusterId, undefined, g, bytes - 1, OVERHEAD, 10);
      expect(page.rows).toHaveLength(SECRETS.length);
      expect(page.rows.every((r) => r.body === undefined)).toBe(true);
      expect(page.next).toBeUndefined();
      expect((await repo.snapshotPage(a.clusterId, undefined, 0n, bytes - 1, OVERHEAD, 10)).next).toBeDefined();
    });
  });

  describe('inject apps', () => {
    const consumers = Array.from({ length: 3 }, (_, i) => ({ namespace: `ns-${i}`, serviceAccount: '*' }));
    /** The app as inject with `consumers`, for the reads only (no build: the rows stay; bodies join apps live). */
    const asInject = async (run: () => Promise<void>) => {
      await ds.query(`UPDATE apps SET delivery_mode = 'inject', consumers = $2::jsonb WHERE name = $1`, [
        'shop',
        JSON.stringify(consumers),
      ]);
      try {
        await run();
      } finally {
        await ds.query(`UPDATE apps SET delivery_mode = 'env', consumers = '[]' WHERE name = $1`, ['shop']);
      }
    };

    it('carries the mode and consumers in every body, and sizes each consumer into the budget', async () => {
      const bytes = await bytesOf(a.clusterId);
      const perRow = consumers.length * CONSUMER_OVERHEAD_BYTES;
      expect(full((await repo.states([{ clusterId: a.clusterId, base: 0n }], bytes, 1 << 20, OVERHEAD))[0]).rows).toHaveLength(3);
      await asInject(async () => {
        const s = full((await repo.states([{ clusterId: a.clusterId, base: 0n }], 1 << 20, 1 << 20, OVERHEAD))[0]);
        for (const r of s.rows) expect(r.body).toMatchObject({ deliveryMode: 'inject', consumers });
        // What fitted before no longer does: the consumers count.
        const total = bytes + SECRETS.length * perRow;
        expect((await repo.states([{ clusterId: a.clusterId, base: 0n }], total - 1, 1 << 20, OVERHEAD))[0]!.kind).toBe('paged');
        expect((await repo.states([{ clusterId: a.clusterId, base: 0n }], total, 1 << 20, OVERHEAD))[0]!.kind).toBe('full');
        // Pages too: a budget one row's consumers short of all three leaves the last row to the next page.
        const page = await repo.snapshotPage(a.clusterId, undefined, 0n, total - perRow, OVERHEAD, 10);
        expect(page.rows).toHaveLength(SECRETS.length - 1);
        expect(page.rows.every((r) => r.body?.consumers.length === consumers.length)).toBe(true);
      });
      // Env apps send no consumers even when they keep a list.
      await ds.query(`UPDATE apps SET consumers = $2::jsonb WHERE name = $1`, ['shop', JSON.stringify(consumers)]);
      try {
        const s = full((await repo.states([{ clusterId: a.clusterId, base: 0n }], bytes, 1 << 20, OVERHEAD))[0]);
        expect(s.rows.every((r) => r.body?.deliveryMode === 'env' && r.body.consumers.length === 0)).toBe(true);
      } finally {
        await ds.query(`UPDATE apps SET consumers = '[]' WHERE name = $1`, ['shop']);
      }
    });
  });

  describe('writeReports()', () => {
    const status = (secretId: string, generation: bigint, state: string, name = 'alpha') => ({
      namespace: 'shop',
      name,
      secretId,
      version: 1,
      generation: generation.toString(),
      state,
      reason: state === 'failed' ? 'Forbidden' : '',
      message: state === 'failed' ? 'the agent may not write Secrets in this namespace' : '',
    });
    const statuses = (clusterId: string) =>
      ds.query<Array<{ name: string; state: string; reason: string }>>(
        'SELECT name, state, reason FROM secret_statuses WHERE cluster_id = $1 ORDER BY name',
        [clusterId],
      );
    const secretIds = async () =>
      new Map(
        (
          await ds.query<Array<{ id: string; name: string }>>(
            'SELECT s.id::text AS id, s.name FROM cluster_secrets cs JOIN secrets s ON s.id = cs.secret_id WHERE cs.cluster_id = $1',
            [c.clusterId],
          )
        ).map((r) => [r.name, r.id]),
      );

    it('records an acknowledged generation only up to what was built, and never moves it back', async () => {
      const g = await built(c.clusterId);
      const ack = (generation: bigint, acked = true) =>
        repo.writeReports([{ clusterId: c.clusterId, generation, acked, agentVersion: null, statuses: [] }]);
      const before = (await cluster(c.clusterId)).applied;
      expect(await ack(g + 1n)).toEqual(new Set());
      expect((await cluster(c.clusterId)).applied).toBe(before);
      expect(await ack(g)).toEqual(new Set([c.clusterId]));
      expect((await cluster(c.clusterId)).applied).toBe(g.toString());
      await ack(g - 1n);
      expect((await cluster(c.clusterId)).applied).toBe(g.toString());
      // A report at a built generation that is not an ack of a sent state carries statuses only.
      await ds.query('UPDATE clusters SET applied_generation = 0 WHERE id = $1', [c.clusterId]);
      expect(await ack(g, false)).toEqual(new Set([c.clusterId]));
      expect((await cluster(c.clusterId)).applied).toBe('0');
    });

    it('records a Hello’s agent version and nothing else', async () => {
      const before = await cluster(c.clusterId);
      expect(await repo.writeReports([{ clusterId: c.clusterId, generation: null, agentVersion: 'agent/9.9', statuses: [] }])).toEqual(
        new Set(),
      );
      expect(await cluster(c.clusterId)).toEqual({ ...before, agentVersion: 'agent/9.9' });
    });

    it('keeps failures and conflicts, clears them once applied, and drops statuses of secrets the snapshot lacks', async () => {
      const g = await built(c.clusterId);
      const ids = await secretIds();
      await repo.writeReports([
        {
          clusterId: c.clusterId,
          generation: g,
          acked: true,
          agentVersion: null,
          statuses: [
            status(ids.get('alpha')!, g, 'failed'),
            status(ids.get('bravo')!, g, 'conflict', 'bravo'),
            status(ids.get('charlie')!, g, 'applied', 'charlie'),
            status('00000000-0000-4000-8000-00000000beef', g, 'failed', 'invented'),
          ],
        },
      ]);
      expect(await statuses(c.clusterId)).toEqual([
        { name: 'alpha', state: 'failed', reason: 'Forbidden' },
        { name: 'bravo', state: 'conflict', reason: '' },
      ]);
      await repo.writeReports([
        { clusterId: c.clusterId, generation: g, acked: false, agentVersion: null, statuses: [status(ids.get('alpha')!, g, 'applied')] },
      ]);
      expect((await statuses(c.clusterId)).map((s) => s.name)).toEqual(['bravo']);
      // Statuses at a generation never built are not recorded.
      await repo.writeReports([
        { clusterId: c.clusterId, generation: g + 5n, agentVersion: null, statuses: [status(ids.get('alpha')!, g + 5n, 'failed')] },
      ]);
      expect((await statuses(c.clusterId)).map((s) => s.name)).toEqual(['bravo']);
    });

    it('writes many clusters in one call, whatever order they come in', async () => {
      const [ga, gb] = [await built(a.clusterId), await built(b.clusterId)];
      const recorded = await repo.writeReports([
        { clusterId: b.clusterId, generation: gb, acked: true, agentVersion: 'b/1', statuses: [] },
        { clusterId: a.clusterId, generation: ga, acked: true, agentVersion: 'a/1', statuses: [] },
      ]);
      expect(recorded).toEqual(new Set([a.clusterId, b.clusterId]));
      expect([(await cluster(a.clusterId)).agentVersion, (await cluster(b.clusterId)).agentVersion]).toEqual(['a/1', 'b/1']);
    });
  });
});
