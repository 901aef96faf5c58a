import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createTlsKeyAndCsr } from '@sigil/agent-protocol';
import { generateAgentKeyPair } from '@sigil/envelope';
import { DataSource } from 'typeorm';
import { AuditService } from '../../apps/control-plane/src/audit/audit.service.js';
import { hashToken } from '../../apps/control-plane/src/auth/bootstrap-admin-token.js';
import { ClusterCertificateAuthority } from '../../apps/control-plane/src/enrollment/cluster-ca.service.js';
import { EnrollmentService } from '../../apps/control-plane/src/enrollment/enrollment.service.js';
import { HsmService } from '../../apps/control-plane/src/hsm/hsm.service.js';
import { ClusterKeyService } from '../../apps/control-plane/src/keys/cluster-keys.service.js';
import type { Role } from '../../apps/control-plane/src/config/sigil-config.js';
import { startTestApp, type TestApp } from '../harness/app-context.js';
import { uniqueName } from '../harness/test-env.js';

// Where one enrollment's time goes, in-process against the real PostgreSQL, Redis and SoftHSM
// (no gRPC, no TLS): N sequential, then N concurrent enrollments, each stage timed by wrapping
// the service method that does it. SIGIL_ENROLL_N scales the run (default 300: a CI-sized
// check); SIGIL_ENROLL_CONCURRENCY the number in flight. The printed table is what
// docs/benchmarks.md and the issue report quote.

const N = Number(process.env.SIGIL_ENROLL_N ?? 300);
const CONCURRENCY = Number(process.env.SIGIL_ENROLL_CONCURRENCY ?? 64);

type Stage = { calls: number; ms: number };

/** Replaces `obj[name]` with a version that adds its wall time to `stages[label]`. */
function timed<T extends object>(stages: Map<string, Stage>, label: string, obj: T, name: string): void {
  const original = ((obj as Record<string, unknown>)[name] as (...a: unknown[]) => unknown).bind(obj);
  (obj as Record<string, unknown>)[name] = async (...args: unknown[]) => {
    const at = performance.now();
    try {
      return await original(...args);
    } finally {
      const s = stages.get(label) ?? { calls: 0, ms: 0 };
      s.calls += 1;
      s.ms += performance.now() - at;
      stages.set(label, s);
    }
  };
}

describe('enrollment throughput (in-process, real services)', () => {
  let t: TestApp;
  let ds: DataSource;
  let enrollment: EnrollmentService;
  const stages = new Map<string, Stage>();
  // One TLS key and one delivery key for every simulated agent: the client's key generation is
  // not the control plane's cost (each cluster still gets its own delivery key and certificate).
  const tls = createTlsKeyAndCsr('agent');
  const delivery = generateAgentKeyPair();

  /** Registers `n` clusters with a token each, in bulk (registration is not what is measured). */
  async function clustersWithTokens(n: number): Promise<Array<{ name: string; token: string }>> {
    const batch = Array.from({ length: n }, (_, i) => ({ name: `${uniqueName('e')}-${i}`, token: `sge_${randomToken()}` }));
    await ds.query(
      `WITH c AS (INSERT INTO clusters (name, labels, state, version) SELECT unnest($1::text[]), '{}'::jsonb, 'registered', 1 RETURNING id, name)
       INSERT INTO enrollment_tokens (cluster_id, token_hash, expires_at, created_by)
       SELECT c.id, t.hash, now() + interval '1 hour', 'bench' FROM c JOIN unnest($1::text[], $2::bytea[]) AS t(name, hash) USING (name)`,
      [batch.map((b) => b.name), batch.map((b) => hashToken(b.token))],
    );
    return batch;
  }

  const enrollOne = (c: { name: string; token: string }) =>
    enrollment.enroll({
      cluster: c.name,
      credential: { bootstrapToken: c.token },
      csrDer: tls.csrDer,
      deliveryPublicKeyDer: delivery.publicKeyDer,
      agentVersion: 'bench/1',
      peer: '127.0.0.1',
    });

  function report(
    title: string,
    n: number,
    wallMs: number,
    cpu: NodeJS.CpuUsage,
    main: NodeJS.CpuUsage,
    elu: number,
    delayP99: number,
  ): void {
    const perEnrollment = (u: NodeJS.CpuUsage) => ((u.user + u.system) / 1000 / n).toFixed(2);
    const lines = [...stages.entries()]
      .sort((a, b) => b[1].ms - a[1].ms)
      .map(([k, s]) => `  ${k.padEnd(28)} ${String(s.calls).padStart(6)} calls  ${(s.ms / s.calls).toFixed(2).padStart(8)} ms/call`);
    // eslint-disable-next-line no-console
    console.log(
      [
        `${title}: ${n} enrollments in ${wallMs.toFixed(0)} ms = ${((n / wallMs) * 1000).toFixed(0)}/s; ` +
          `CPU per enrollment: main thread ${perEnrollment(main)} ms, whole process (with HSM workers) ${perEnrollment(cpu)} ms; ` +
          `event-loop utilisation ${(elu * 100).toFixed(0)}%, ` +
          `loop delay p99 ${delayP99.toFixed(1)} ms`,
        ...lines,
      ].join('\n'),
    );
    stages.clear();
  }

  async function run(title: string, batch: Array<{ name: string; token: string }>, concurrency: number): Promise<number> {
    const delay = monitorEventLoopDelay({ resolution: 5 });
    delay.enable();
    const elu0 = performance.eventLoopUtilization();
    const cpu0 = process.cpuUsage();
    const main0 = process.threadCpuUsage();
    const at = performance.now();
    let next = 0;
    let failures = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < batch.length) {
          const c = batch[next++]!;
          await enrollOne(c).catch((err: unknown) => {
            failures += 1;
            if (failures < 5) console.error(err); // eslint-disable-line no-console
          });
        }
      }),
    );
    const wall = performance.now() - at;
    delay.disable();
    report(
      title,
      batch.length,
      wall,
      process.cpuUsage(cpu0),
      process.threadCpuUsage(main0),
      performance.eventLoopUtilization(elu0).utilization,
      delay.percentile(99) / 1e6,
    );
    expect(failures).toBe(0);
    return (batch.length / wall) * 1000;
  }

  beforeAll(async () => {
    t = await startTestApp({ roles: (process.env.SIGIL_ENROLL_ROLES ?? 'grpc').split(',') as Role[] });
    ds = t.app.get(DataSource);
    enrollment = t.app.get(EnrollmentService);
    const ca = t.app.get(ClusterCertificateAuthority);
    const hsm = t.app.get(HsmService);
    const audit = t.app.get(AuditService);
    const keys = t.app.get(ClusterKeyService);
    const svc = enrollment as unknown as Record<string, Record<string, unknown>>;
    timed(stages, 'enroll (total)', enrollment, 'enroll');
    timed(stages, 'transaction (total)', svc.uow!, 'run');
    timed(stages, 'ca.issueClientCertificate', ca, 'issueClientCertificate');
    timed(stages, 'hsm.caSign', hsm, 'caSign');
    timed(stages, 'clusterKeys.issue', keys, 'issue');
    timed(stages, 'hsm.createClusterKey', hsm, 'createClusterKey');
    timed(stages, 'audit.record', audit, 'record');
    for (const m of ['auditAppend', 'auditAppendBatch'] as const) if (m in hsm) timed(stages, `hsm.${m}`, hsm, m);
    for (const [label, obj, name] of [
      ['events.publish', svc.events, 'publish'],
      ['membership.rebuild', svc.membership, 'rebuild'],
      ['membership.enqueue', svc.membership, 'enqueue'],
    ] as const)
      if (obj && name in obj) timed(stages, label, obj, name);
    // Warm up: the CA certificate, HSM sessions and handles, prepared pool connections.
    for (const c of await clustersWithTokens(20)) await enrollOne(c);
    stages.clear();
  }, 120_000);

  afterAll(async () => {
    await t?.dispose();
  });

  it(`times ${N} sequential and ${N} concurrent enrollments`, async () => {
    const sequential = await run('sequential', await clustersWithTokens(Math.min(N, 200)), 1);
    const concurrent = await run(`concurrent (${CONCURRENCY} in flight)`, await clustersWithTokens(N), CONCURRENCY);
    expect(concurrent).toBeGreaterThan(sequential); // concurrency must buy something: no serial bottleneck left
    const [audit] = await ds.query<Array<{ n: string }>>(`SELECT count(*)::text AS n FROM audit_events WHERE action = 'cluster.enroll'`);
    expect(Number(audit!.n)).toBeGreaterThanOrEqual(N + Math.min(N, 200));
  }, 600_000);
});

function randomToken(): string {
  return Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(32))).toString('base64url');
}
