import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { status } from '@grpc/grpc-js';
import {
  AgentServiceClient,
  agentChannelCredentials,
  AGENT_MESSAGE_LIMITS,
  ERROR_CODE_METADATA,
  createTlsKeyAndCsr,
  RETRY_AFTER_METADATA,
  unary,
  type EnrollResponse,
} from '@sigil/agent-protocol';
import { generateAgentKeyPair } from '@sigil/envelope';
import { DataSource } from 'typeorm';
import { Actor } from '../../apps/control-plane/src/auth/policy.js';
import { ClusterEnrollmentRepository } from '../../apps/control-plane/src/clusters/cluster-enrollment.repository.js';
import { ClustersService } from '../../apps/control-plane/src/clusters/clusters.service.js';
import { EnrollmentService } from '../../apps/control-plane/src/enrollment/enrollment.service.js';
import { agentEndpoint, startTestApp, type TestApp } from '../harness/app-context.js';
import { uniqueName } from '../harness/test-env.js';

// Enrollment retries and enrollment under load, over real mTLS gRPC against the control plane's
// modules on the harness' PostgreSQL, Redis and SoftHSM.

const admin = new Actor('test', 'test-admin', 'admin', null);

interface Keys {
  tls: { keyPem: string; csrDer: Buffer };
  delivery: { privateKeyPem: string; publicKeyDer: Buffer };
}

interface Failure {
  code: status | undefined;
  errorCode: string | undefined;
  retryAfterMs: number | undefined;
}

function failureOf(err: unknown): Failure {
  const e = err as { code?: status; metadata?: { get(k: string): unknown[] } };
  const meta = (k: string) => e.metadata?.get(k)[0] as string | undefined;
  const retry = meta(RETRY_AFTER_METADATA);
  return { code: e.code, errorCode: meta(ERROR_CODE_METADATA), retryAfterMs: retry === undefined ? undefined : Number(retry) };
}

async function refusal(p: Promise<unknown>): Promise<Failure> {
  try {
    await p;
  } catch (err) {
    return failureOf(err);
  }
  throw new Error('expected the call to fail');
}

const certKey = (der: Uint8Array) => new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });

describe('enrollment retries', () => {
  let t: TestApp;
  let clusters: ClustersService;
  let ds: DataSource;
  let endpoint: { address: string; caPem: string };
  const clients: AgentServiceClient[] = [];
  const delivery = generateAgentKeyPair();

  const client = () => {
    const c = new AgentServiceClient(endpoint.address, agentChannelCredentials(endpoint.caPem), AGENT_MESSAGE_LIMITS);
    clients.push(c);
    return c;
  };
  const enroll = (cluster: string, token: string, keys: Keys) =>
    unary<EnrollResponse>((cb) =>
      client().enroll(
        {
          cluster,
          credential: { $case: 'bootstrapToken', value: token },
          csrDer: keys.tls.csrDer,
          deliveryPublicKeyDer: keys.delivery.publicKeyDer,
          agentVersion: 'retry-test/1',
        },
        cb,
      ),
    );
  const registered = async () => {
    const name = uniqueName('r');
    await clusters.register(name, {});
    return { name, token: (await clusters.createEnrollmentToken(admin, name)).token };
  };
  const keys = (): Keys => ({ tls: createTlsKeyAndCsr('agent'), delivery });
  const row = async (name: string) =>
    (
      await ds.query<Array<{ state: string; agent_key_sha256: Buffer; desired_generation: string }>>(
        'SELECT state, agent_key_sha256, desired_generation::text FROM clusters WHERE name = $1',
        [name],
      )
    )[0]!;

  beforeAll(async () => {
    t = await startTestApp({ roles: ['grpc'] });
    clusters = t.app.get(ClustersService);
    ds = t.app.get(DataSource);
    endpoint = agentEndpoint(t.app);
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await t?.dispose();
  });

  it('a retry with the same token and key pair gets a fresh certificate for the same key, the same envelope, and changes nothing else', async () => {
    const { name, token } = await registered();
    const k = keys();
    const first = await enroll(name, token, k);
    const before = await row(name);
    const again = await enroll(name, token, k);
    expect(again.clusterId).toBe(first.clusterId);
    expect(Buffer.from(again.certificateDer).equals(Buffer.from(first.certificateDer))).toBe(false); // a new certificate…
    expect(certKey(again.certificateDer).equals(certKey(first.certificateDer))).toBe(true); // …for the same key
    expect(new X509Certificate(again.certificateDer).serialNumber).not.toBe(new X509Certificate(first.certificateDer).serialNumber);
    expect(Buffer.from(again.clusterKeyEnvelope).equals(Buffer.from(first.clusterKeyEnvelope))).toBe(true);
    expect(await row(name)).toEqual(before); // same key, same generation: nothing rebuilt
    const [keysRow] = await ds.query<Array<{ n: string }>>('SELECT count(*)::text AS n FROM cluster_keys WHERE cluster_id = $1', [
      first.clusterId,
    ]);
    expect(keysRow!.n).toBe('1');
    // Both are audited as successes; the second says it was a retry.
    const audit = await ds.query<Array<{ actor_name: string; outcome: string }>>(
      `SELECT actor_name, outcome FROM audit_events WHERE action = 'cluster.enroll' AND target = $1 ORDER BY seq`,
      [name],
    );
    expect(audit.map((a) => a.outcome)).toEqual(['success', 'success']);
    expect(audit[1]!.actor_name).toContain('retry');
  });

  it('a used token is refused, alike, with another TLS key, another delivery key, after it expired, or once the cluster is disabled', async () => {
    const { name, token } = await registered();
    const k = keys();
    await enroll(name, token, k);
    const refusedAlike = { code: status.UNAUTHENTICATED, errorCode: 'enrollment_token_invalid' };
    expect(await refusal(enroll(name, token, { tls: createTlsKeyAndCsr('thief'), delivery: k.delivery }))).toMatchObject(refusedAlike);
    expect(await refusal(enroll(name, token, { tls: k.tls, delivery: generateAgentKeyPair() }))).toMatchObject(refusedAlike);
    // The refused attempts changed nothing: the agent's own retry still works.
    await enroll(name, token, k);
    await clusters.setEnabled(name, false, undefined);
    expect(await refusal(enroll(name, token, k))).toMatchObject(refusedAlike);
    await clusters.setEnabled(name, true, undefined);
    await enroll(name, token, k);
    await ds.query(`UPDATE enrollment_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = sha256($1::bytea)`, [
      Buffer.from(token),
    ]);
    expect(await refusal(enroll(name, token, k))).toMatchObject(refusedAlike);
  });

  it('enrollments committed together are each judged alone; a retry racing its first attempt gets the same key', async () => {
    // In-process, all submitted in the same turn, so they share batches (over gRPC the TLS
    // handshakes spread them out): the repository is watched for the size of each batch.
    const repo = t.app.get(ClusterEnrollmentRepository);
    const lockTokens = repo.lockTokens.bind(repo);
    const batchSizes: number[] = [];
    repo.lockTokens = (tx, hashes) => (batchSizes.push(hashes.length), lockTokens(tx, hashes));
    const service = t.app.get(EnrollmentService);
    const direct = (cluster: string, token: string, k: Keys) =>
      service.enroll({
        cluster,
        credential: { bootstrapToken: token },
        csrDer: k.tls.csrDer,
        deliveryPublicKeyDer: k.delivery.publicKeyDer,
        agentVersion: 'batch-test/1',
        peer: '127.0.0.1',
      });
    try {
      const good = await Promise.all(Array.from({ length: 10 }, registered));
      const [disabled, expired, other] = await Promise.all([registered(), registered(), registered()]);
      await clusters.setEnabled(disabled.name, false, undefined);
      await ds.query(`UPDATE enrollment_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = sha256($1::bytea)`, [
        Buffer.from(expired.token),
      ]);
      const k = good.map(keys);
      const racing = keys();
      const outcome = (p: Promise<{ clusterId: string; clusterKeyEnvelope: Buffer }>) =>
        p.then(
          (e) => ({ ok: true as const, clusterId: e.clusterId, envelope: e.clusterKeyEnvelope }),
          (err: { code?: string }) => ({ ok: false as const, code: err.code }),
        );
      const results = await Promise.all([
        ...good.map((g, i) => outcome(direct(g.name, g.token, k[i]!))),
        outcome(direct(disabled.name, disabled.token, keys())),
        outcome(direct(expired.name, expired.token, keys())),
        outcome(direct(good[0]!.name, other.token, keys())), // another cluster's token
        outcome(direct(other.name, other.token, racing)),
        outcome(direct(other.name, other.token, racing)), // the same agent again, before the first was answered
      ]);
      expect(Math.max(...batchSizes)).toBeGreaterThan(1);
      const enrolled = results.slice(0, 10);
      expect(enrolled.every((r) => r.ok)).toBe(true);
      expect(new Set(enrolled.map((r) => r.ok && r.clusterId)).size).toBe(10);
      expect(results.slice(10, 13)).toEqual([
        { ok: false, code: 'cluster_disabled' },
        { ok: false, code: 'enrollment_token_invalid' },
        { ok: false, code: 'enrollment_token_invalid' },
      ]);
      const [first, second] = results.slice(13) as Array<{ ok: true; clusterId: string; envelope: Buffer }>;
      expect(first!.ok && second!.ok).toBe(true);
      expect(second!.clusterId).toBe(first!.clusterId);
      expect(Buffer.from(second!.envelope).equals(Buffer.from(first!.envelope))).toBe(true);
      const counts = await ds.query<Array<{ name: string; keys: number; active: number; state: string; used: boolean }>>(
        `SELECT c.name, c.state, (SELECT count(*)::int FROM cluster_keys k WHERE k.cluster_id = c.id) AS keys,
                (SELECT count(*)::int FROM cluster_keys k WHERE k.cluster_id = c.id AND k.state = 'active') AS active,
                (SELECT bool_or(t.used_at IS NOT NULL) FROM enrollment_tokens t WHERE t.cluster_id = c.id) AS used
           FROM clusters c WHERE c.name = ANY($1::text[]) ORDER BY c.name`,
        [[...good, disabled, expired, other].map((c) => c.name)],
      );
      const byName = new Map(counts.map((c) => [c.name, c]));
      for (const g of [...good, other]) expect(byName.get(g.name)).toMatchObject({ state: 'enrolled', keys: 1, active: 1, used: true });
      // Refused ones left nothing behind: no key, the token unused.
      expect(byName.get(disabled.name)).toMatchObject({ state: 'disabled', keys: 0, used: false });
      expect(byName.get(expired.name)).toMatchObject({ state: 'registered', keys: 0, used: false });
      const audit = await ds.query<Array<{ actor_name: string }>>(
        `SELECT actor_name FROM audit_events WHERE action = 'cluster.enroll' AND target = $1 AND outcome = 'success' ORDER BY seq`,
        [other.name],
      );
      // One enrollment and one retry (in either order: the first also enqueues its build before it is audited).
      expect(audit.map((a) => a.actor_name.includes('retry')).sort()).toEqual([false, true]);
    } finally {
      repo.lockTokens = lockTokens;
    }
  });

  it('a used token is refused once the cluster was enrolled again with another key', async () => {
    const { name, token } = await registered();
    const k = keys();
    await enroll(name, token, k);
    const second = (await clusters.createEnrollmentToken(admin, name)).token;
    await enroll(name, second, keys()); // a new agent (new TLS key) replaces the first
    expect(await refusal(enroll(name, token, k))).toMatchObject({ code: status.UNAUTHENTICATED, errorCode: 'enrollment_token_invalid' });
  });
});

describe('enrollment under load', () => {
  let t: TestApp;
  const clients: AgentServiceClient[] = [];

  beforeAll(async () => {
    // A deliberately small pool: 4 connections, so one enrollment at a time and 8 waiting.
    t = await startTestApp({ roles: ['grpc'], env: { SIGIL_DB_POOL_SIZE: '4', SIGIL_AGENT_WORK_QUEUE_DEPTH: '8' } });
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await t?.dispose();
  });

  it('200 concurrent enrollments against a small pool all complete; the surplus is told to retry later, as agents do', async () => {
    const clusters = t.app.get(ClustersService);
    const ds = t.app.get(DataSource);
    const { address, caPem } = agentEndpoint(t.app);
    const delivery = generateAgentKeyPair();
    // Registered a few at a time: the set-up goes through the same 4-connection pool, and 200 at
    // once would time out waiting for it (what is under test is Enroll's gate, not this).
    const agents: Array<{ name: string; token: string; tls: ReturnType<typeof createTlsKeyAndCsr> }> = [];
    for (let i = 0; i < 200; i += 4)
      agents.push(
        ...(await Promise.all(
          Array.from({ length: 4 }, async () => {
            const name = uniqueName('l');
            await clusters.register(name, {});
            return { name, token: (await clusters.createEnrollmentToken(admin, name)).token, tls: createTlsKeyAndCsr(name) };
          }),
        )),
      );
    const told: Failure[] = [];
    const deadline = Date.now() + 120_000;
    const results = await Promise.all(
      agents.map(async (a) => {
        const c = new AgentServiceClient(address, agentChannelCredentials(caPem));
        clients.push(c);
        for (;;) {
          try {
            return await unary<EnrollResponse>((cb) =>
              c.enroll(
                {
                  cluster: a.name,
                  credential: { $case: 'bootstrapToken', value: a.token },
                  csrDer: a.tls.csrDer,
                  deliveryPublicKeyDer: delivery.publicKeyDer,
                  agentVersion: 'load/1',
                },
                cb,
              ),
            );
          } catch (err) {
            const f = failureOf(err);
            if (f.code !== status.UNAVAILABLE || Date.now() > deadline) throw err;
            told.push(f);
            // As the agent does: a random moment within the window it was told.
            await new Promise((r) => setTimeout(r, Math.random() * (f.retryAfterMs ?? 1_000)));
          }
        }
      }),
    );
    expect(results).toHaveLength(200);
    const [enrolled] = await ds.query<Array<{ n: string }>>(`SELECT count(*)::text AS n FROM clusters WHERE state = 'enrolled'`);
    expect(enrolled!.n).toBe('200');
    // The gate did turn work away (so it was tested), always as `busy` with a window, never a pool timeout.
    const busy = told.filter((f) => f.errorCode === 'busy');
    expect(busy.length).toBeGreaterThan(0);
    for (const f of busy) expect(f.retryAfterMs).toBeGreaterThanOrEqual(1_000);
    expect(told.every((f) => f.errorCode === 'busy' || f.errorCode === 'admission_ramp')).toBe(true);
  }, 180_000);
});
