import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { status } from '@grpc/grpc-js';
import { AgentServiceClient, agentChannelCredentials } from '@sigil/agent-protocol';
import { openClusterKeyEnvelope } from '@sigil/envelope';
import { DataSource } from 'typeorm';
import { clusterUri } from '../../apps/control-plane/src/enrollment/cluster-ca.service.js';
import { FailedAttempts } from '../../apps/control-plane/src/audit/failed-attempts.js';
import { ClustersService } from '../../apps/control-plane/src/clusters/clusters.service.js';
import { Actor } from '../../apps/control-plane/src/auth/policy.js';
import { AgentPresence } from '../../apps/control-plane/src/events/agent-presence.js';
import { ClusterEvents } from '../../apps/control-plane/src/events/cluster-events.js';
import { agentEndpoint, startTestApp, type TestApp } from '../harness/app-context.js';
import { selfSigned } from '../harness/certificates.js';
import { uniqueName } from '../harness/test-env.js';
import { failureOf, TestAgent, unary, type CallFailure, refused } from '../harness/test-agent.js';
import { enrollAgent, syncRefusal, SyncSession } from '../harness/sync-session.js';
import { eventually, holds } from '../harness/eventually.js';

// Enrollment by bootstrap token and per-cluster authorisation over real mTLS gRPC, against the
// control plane's modules on the harness' PostgreSQL, Redis and SoftHSM.

const admin = new Actor('test', 'test-admin', 'admin', null);

describe('agent enrollment and mTLS', () => {
  let t: TestApp;
  let clusters: ClustersService;
  let ds: DataSource;
  let endpoint: { address: string; caPem: string };
  const agents: TestAgent[] = [];

  const register = async () => {
    const name = uniqueName('c');
    await clusters.register(name, { site: 'test' });
    return name;
  };
  const token = async (cluster: string) => ({
    $case: 'bootstrapToken' as const,
    value: (await clusters.createEnrollmentToken(admin, cluster)).token,
  });
  const agentFor = (cluster: string) => {
    const a = new TestAgent(endpoint.address, endpoint.caPem, cluster);
    agents.push(a);
    return a;
  };
  const enrolled = async () => {
    const name = await register();
    const a = agentFor(name);
    await a.enroll(await token(name));
    return a;
  };

  beforeAll(async () => {
    t = await startTestApp();
    clusters = t.app.get(ClustersService);
    ds = t.app.get(DataSource);
    endpoint = agentEndpoint(t.app);
  });

  afterAll(async () => {
    for (const a of agents) a.close();
    await t?.dispose();
  });

  it('enrolls with a bootstrap token: a certificate naming the cluster, and its delivery key for this agent only', async () => {
    const name = await register();
    const a = agentFor(name);
    const res = await a.enroll(await token(name));
    const cert = new X509Certificate(res.certificateDer);
    const [row] = await ds.query<Array<{ id: string; state: string; agent_version: string }>>(
      'SELECT id, state, agent_version FROM clusters WHERE name = $1',
      [name],
    );
    expect(res.clusterId).toBe(row!.id);
    expect(row).toMatchObject({ state: 'enrolled', agent_version: 'test-agent/1' });
    expect(cert.subject).toContain(`CN=${name}`);
    expect(cert.subjectAltName).toBe(`URI:${clusterUri(row!.id)}`);
    expect(cert.verify(new X509Certificate(res.caChainDer[0]!).publicKey)).toBe(true);
    expect(new X509Certificate(res.caChainDer[0]!).toString()).toBe(new X509Certificate(endpoint.caPem).toString());
    const lifetimeH = (new Date(cert.validTo).getTime() - Date.now()) / 3_600_000;
    expect(lifetimeH).toBeGreaterThan(23);
    expect(lifetimeH).toBeLessThanOrEqual(24);
    expect(openClusterKeyEnvelope(a.delivery.privateKeyPem, res.clusterKeyEnvelope).key).toHaveLength(32);
    const other = agentFor('x');
    expect(() => openClusterKeyEnvelope(other.delivery.privateKeyPem, res.clusterKeyEnvelope)).toThrow();
    // And the certificate works: the agent's first call. Enrollment built its (empty) snapshot.
    const state = await eventually(
      'the first build',
      async () => {
        const s = await a.desiredState();
        return s.generation === 0n ? undefined : s;
      },
      5_000,
      50,
    );
    expect(state).toMatchObject({ generation: 1n, secrets: [] });
    expect(state.clusterKeyEnvelopes).toEqual([res.clusterKeyEnvelope]);
  });

  it('refuses a reused, an expired, and another cluster’s token alike, and a garbage one', async () => {
    const name = await register();
    const used = await token(name);
    await agentFor(name).enroll(used);
    const expired = await token(name);
    await ds.query(`UPDATE enrollment_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = sha256($1::bytea)`, [
      Buffer.from(expired.value),
    ]);
    const foreign = await token(await register());
    for (const credential of [used, expired, foreign, { $case: 'bootstrapToken' as const, value: 'sge_guess' }]) {
      const f = await refused(agentFor(name).enroll(credential));
      expect(f).toMatchObject({ code: status.UNAUTHENTICATED, errorCode: 'enrollment_token_invalid' });
    }
    // The other cluster's token was not consumed by the failed attempt.
    const [row] = await ds.query<Array<{ used_at: Date | null }>>(
      'SELECT used_at FROM enrollment_tokens WHERE token_hash = sha256($1::bytea)',
      [Buffer.from(foreign.value)],
    );
    expect(row!.used_at).toBeNull();
  });

  it('a rejected CSR or delivery key leaves the token unused', async () => {
    const name = await register();
    const cred = await token(name);
    const a = agentFor(name);
    expect(await refused(a.enroll(cred, { csrDer: Buffer.from('not a csr') }))).toMatchObject({
      code: status.INVALID_ARGUMENT,
      errorCode: 'invalid_csr',
    });
    expect(await refused(a.enroll(cred, { deliveryPublicKeyDer: Buffer.alloc(10) }))).toMatchObject({
      code: status.INVALID_ARGUMENT,
      errorCode: 'invalid_delivery_key',
    });
    await a.enroll(cred);
    expect(await refused(agentFor(name).enroll(cred))).toMatchObject({ code: status.UNAUTHENTICATED });
  });

  it('answers UNAUTHENTICATED to every method but Enroll without a client certificate', async () => {
    const client = new AgentServiceClient(endpoint.address, agentChannelCredentials(endpoint.caPem));
    try {
      const failures = [await refused(unary((cb) => client.renewCertificate({ csrDer: Buffer.alloc(0) }, cb))), await syncRefusal(client)];
      for (const f of failures) expect(f).toMatchObject({ code: status.UNAUTHENTICATED, errorCode: 'client_certificate_required' });
    } finally {
      client.close();
    }
  });

  it('refuses a certificate from another CA, even one naming a real cluster', async () => {
    const a = await enrolled();
    const forged = selfSigned(a.cluster, [`subjectAltName=URI:${clusterUri(a.enrollment!.clusterId)}`, 'extendedKeyUsage=clientAuth']);
    const impostor = new AgentServiceClient(
      endpoint.address,
      agentChannelCredentials(endpoint.caPem, { keyPem: forged.key, certificatePem: forged.cert }),
    );
    try {
      const f = await syncRefusal(impostor);
      expect(f.code).toBe(status.UNAUTHENTICATED);
    } finally {
      impostor.close();
    }
  });

  it('authorises streams per cluster: each hears only its own generations', async () => {
    const names = [await register(), await register()];
    const [a, b] = await Promise.all(names.map(async (n) => enrollAgent(endpoint.address, endpoint.caPem, n, (await token(n)).value)));
    try {
      // The certificate names the cluster; there is no field to ask for another one.
      const [sa, sb] = [new SyncSession(a!.client, { appliedGeneration: 0n }), new SyncSession(b!.client, { appliedGeneration: 0n })];
      const [fa, fb] = [await sa.state(1), await sb.state(1)];
      sa.ackState(fa);
      sb.ackState(fb);
      await ds.query('UPDATE clusters SET desired_generation = 7, built_generation = 7 WHERE id = $1', [b!.clusterId]);
      await t.app.get(ClusterEvents).publish({ type: 'desired', clusterIds: [b!.clusterId] });
      expect((await sb.state(2)).generation).toBe(7n);
      // A's stream heard nothing of it: the next state it gets is its own next build.
      const next = fa.generation + 1n;
      await ds.query('UPDATE clusters SET desired_generation = $2, built_generation = $2 WHERE id = $1', [a!.clusterId, next.toString()]);
      await t.app.get(ClusterEvents).publish({ type: 'desired', clusterIds: [a!.clusterId] });
      await sa.state(2);
      expect(sa.states.map((x) => x.generation)).toEqual([fa.generation, next]);
      // Each agent's key envelope opens with its own key only.
      expect(openClusterKeyEnvelope(a!.delivery.privateKeyPem, fa.keyEnvelopes[0]!).version).toBeGreaterThan(0);
      expect(() => openClusterKeyEnvelope(b!.delivery.privateKeyPem, fa.keyEnvelopes[0]!)).toThrow();
      sa.cancel();
      sb.cancel();
    } finally {
      a?.close();
      b?.close();
    }
  });

  it('disabling a cluster closes its stream within 1 s and refuses its certificate until it is enabled', async () => {
    const a = await enrolled();
    const w = a.open();
    await w.waitFor((g) => g.length >= 1);
    const started = Date.now();
    await clusters.setEnabled(a.cluster, false, undefined);
    const end = await w.ended;
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(end).toMatchObject({ code: status.PERMISSION_DENIED, errorCode: 'access_revoked' });
    expect(await refused(a.desiredState())).toMatchObject({ code: status.PERMISSION_DENIED, errorCode: 'cluster_disabled' });
    await clusters.setEnabled(a.cluster, true, undefined);
    expect((await a.desiredState()).clusterKeyEnvelopes.length).toBeGreaterThan(0);
  });

  it('deleting a cluster closes its stream within 1 s; its certificate is refused from then on', async () => {
    const a = await enrolled();
    const w = a.open();
    await w.waitFor((g) => g.length >= 1);
    const started = Date.now();
    await clusters.delete(a.cluster, undefined);
    expect(await w.ended).toMatchObject({ code: status.PERMISSION_DENIED });
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(await refused(a.desiredState())).toMatchObject({ code: status.UNAUTHENTICATED, errorCode: 'cluster_not_found' });
  });

  it('tells whether a cluster’s agent is connected: while its stream is open, and not within 2 s after it closes', async () => {
    const presence = t.app.get(AgentPresence);
    const a = await enrolled();
    const id = (await clusters.get(a.cluster)).id;
    expect((await presence.connected([id]))?.get(id)).toBe(false); // enrolled, no stream yet
    const w = a.open();
    await w.waitFor((g) => g.length >= 1);
    await eventually('marked connected', async () => ((await presence.connected([id]))?.get(id) === true ? true : undefined), 3_000);
    w.cancel();
    const closedAt = Date.now();
    await eventually('marked disconnected', async () => ((await presence.connected([id]))?.get(id) === false ? true : undefined), 3_000);
    expect(Date.now() - closedAt).toBeLessThan(2_500);
  });

  it('a new enrollment supersedes the previous agent’s certificate and stream', async () => {
    const first = await enrolled();
    const w = first.open();
    await w.waitFor((g) => g.length >= 1);
    const second = agentFor(first.cluster);
    await second.enroll(await token(first.cluster));
    expect(await w.ended).toMatchObject({ code: status.PERMISSION_DENIED });
    expect(await refused(first.desiredState())).toMatchObject({ code: status.UNAUTHENTICATED, errorCode: 'certificate_superseded' });
    expect((await second.desiredState()).clusterKeyEnvelopes.length).toBeGreaterThan(0);
  });

  it('renews the certificate before it expires, for the same key', async () => {
    const a = await enrolled();
    const before = new X509Certificate(a.certificatePem!);
    const renewed = await a.renew();
    expect(renewed.serialNumber).not.toBe(before.serialNumber);
    expect(renewed.publicKey.export({ type: 'spki', format: 'der' })).toEqual(before.publicKey.export({ type: 'spki', format: 'der' }));
    expect(renewed.subjectAltName).toBe(before.subjectAltName);
    expect((await a.desiredState()).clusterKeyEnvelopes.length).toBeGreaterThan(0);
  });

  it('records applied generations acknowledged by the agent, never one it was not sent', async () => {
    const name = await register();
    const a = await enrollAgent(endpoint.address, endpoint.caPem, name, (await token(name)).value);
    try {
      const s = new SyncSession(a.client, { appliedGeneration: 0n });
      await s.state(1);
      await ds.query('UPDATE clusters SET desired_generation = 3, built_generation = 3 WHERE id = $1', [a.clusterId]);
      s.resync();
      const st = await s.until((x) => x.generation === 3n);
      s.ackState(st);
      const applied = async () =>
        (await ds.query<Array<{ g: string }>>('SELECT applied_generation::text AS g FROM clusters WHERE id = $1', [a.clusterId]))[0]!.g;
      await eventually('the ack recorded', async () => holds((await applied()) === '3'), 3_000, 20);
      s.ack(4n);
      expect(await s.ended).toMatchObject({ code: status.INVALID_ARGUMENT, errorCode: 'unexpected_generation' });
      expect(await applied()).toBe('3');
    } finally {
      a.close();
    }
  });

  it('audits enrollments, refused ones included, without the token', async () => {
    const name = await register();
    const cred = await token(name);
    await agentFor(name).enroll(cred);
    const failed = t.app.get(FailedAttempts);
    await failed.flush();
    await refused(agentFor(name).enroll(cred));
    const rows = await ds.query<Array<{ outcome: string; target: string; actor_name: string }>>(
      `SELECT outcome, target, actor_name FROM audit_events WHERE action = 'cluster.enroll' AND target = $1 ORDER BY seq`,
      [name],
    );
    expect(rows.map((r) => r.outcome)).toEqual(['success']);
    expect(rows[0]!.actor_name).toMatch(/^agent \(bootstrap-token\) from /);
    // Refused attempts are counted and written once per window (FailedAttempts), not one record each.
    await failed.flush();
    const [denied] = await ds.query<Array<{ target: string; status: number }>>(
      `SELECT target, status FROM audit_events WHERE action = 'cluster.enroll' AND outcome = 'denied' ORDER BY seq DESC LIMIT 1`,
    );
    expect(denied).toMatchObject({ status: 401 });
    expect(denied!.target).toMatch(/^count=1 since=\S+ sources=\S+\*1$/);
    const all = JSON.stringify(await ds.query('SELECT * FROM audit_events'));
    expect(all).not.toContain(cred.value);
  });
});

describe('enrollment flood control', () => {
  const apps: TestApp[] = [];
  const bogus = (c: string) => ({ $case: 'bootstrapToken' as const, value: `sge_${c.repeat(43)}` });

  async function agentOn(env: Record<string, string>): Promise<TestAgent> {
    const t = await startTestApp({ env });
    apps.push(t);
    const name = uniqueName('c');
    await t.app.get(ClustersService).register(name, {});
    const { address, caPem } = agentEndpoint(t.app);
    return new TestAgent(address, caPem, name);
  }

  afterAll(async () => {
    for (const t of apps) await t.dispose();
  });

  it('ramps admission after a start: a burst beyond the rate is told a window to retry in', async () => {
    const a = await agentOn({ SIGIL_GRPC_ADMISSION_RPS: '3' });
    const results = await Promise.all(Array.from({ length: 30 }, () => a.enroll(bogus('A')).catch((err: unknown) => err)));
    const ramped = results.filter((e) => failureOf(e).errorCode === 'admission_ramp');
    expect(ramped.length).toBeGreaterThanOrEqual(20); // 3/s at start
    const windows = ramped.map((e) => Number((e as { metadata: { get(k: string): unknown[] } }).metadata.get('sigil-retry-after-ms')[0]));
    for (const w of windows) expect(w).toBeGreaterThanOrEqual(250);
    expect(Math.max(...windows)).toBeGreaterThan(Math.min(...windows)); // the window grows with the crowd
    expect(results.every((e) => failureOf(e).code === status.UNAVAILABLE || failureOf(e).code === status.UNAUTHENTICATED)).toBe(true);
    a.close();
  });

  it('throttles failed enrollments per address', async () => {
    const a = await agentOn({});
    const failures: CallFailure[] = [];
    for (let i = 0; i < 30 && !failures.some((f) => f.errorCode === 'rate_limited'); i++) {
      failures.push(await refused(a.enroll(bogus('B'))));
    }
    expect(failures.filter((f) => f.errorCode === 'enrollment_token_invalid').length).toBeGreaterThanOrEqual(10);
    expect(failures.at(-1)).toMatchObject({ code: status.RESOURCE_EXHAUSTED, errorCode: 'rate_limited' });
    a.close();
  });
});
