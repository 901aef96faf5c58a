import { randomBytes } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import type { PinoLogger } from 'nestjs-pino';
import type { RuntimeConfig } from '../config/runtime-config.js';
import { CredentialEngineError, type CreateRoleRequest, type CredentialEngine } from '../connections/engines/credential-engine.js';
import type { UnitOfWork } from '../database/transaction.js';
import type { MembershipService } from '../delivery/membership.service.js';
import type { HsmService } from '../hsm/hsm.service.js';
import type { SealedValueService, ValueToSeal } from '../keys/sealed-values.service.js';
import type { MetricsService } from '../metrics/metrics.service.js';
import type { ConnectionRef, CredentialTargets } from './credential-targets.js';
import type { LeaseAudit } from './lease-audit.js';
import { LeaseIssuer } from './lease-issuer.js';
import { ENGINE_CONCURRENCY } from './lease-work.js';
import type { IssueCandidate, LeasesRepository } from './leases.repository.js';

/**
 * The issuer over an in-memory lease table and a fake engine: the state machine (intent →
 * active, or failed with the engine's reason), one connection down failing only its own leases,
 * and the bounded, parallel engine calls.
 */
function world(opts: { clusters: number; down?: Set<string>; slowMs?: number }) {
  const connections = ['orders-db', 'billing-db'];
  const refs: ConnectionRef[] = connections.map((name, i) => ({
    id: `conn-${i}`,
    projectId: 'p',
    name,
    engine: 'postgresql',
    rolePrefix: `sigil_${i}_`,
  }));
  const candidates: IssueCandidate[] = connections.flatMap((connection) =>
    Array.from({ length: opts.clusters }, (_, c) => ({
      secretId: `s-${connection}`,
      projectId: 'p',
      appId: 'a',
      clusterId: `c${c}`,
      project: 'p',
      app: 'app',
      secret: `s-${connection}`,
      cluster: `c${c}`,
      spec: {
        connection,
        creationStatements: ['CREATE ROLE {{name}} PASSWORD {{password}}'],
        keys: { username: '{{username}}', password: '{{password}}' },
      },
      attempts: 0,
    })),
  );
  const leases = new Map<
    string,
    { id: string; secretId: string; clusterId: string; state: string; roleName: string; lastError?: string; sealed?: string }
  >();
  const roles = new Set<string>();
  const sealedPayloads: Buffer[] = [];
  const inFlight = new Map<string, number>();
  const maxInFlight = new Map<string, number>();
  const passwords: Buffer[] = [];
  const calls = new Map<string, number>();
  const sessions = new Map<string, number>();

  const repo = {
    issueCandidates: (limit: number) =>
      Promise.resolve(
        candidates
          .filter((c) => ![...leases.values()].some((l) => l.secretId === c.secretId && l.clusterId === c.clusterId))
          .slice(0, limit),
      ),
    insertIntents: (rows: Array<{ id: string; secretId: string; clusterId: string; roleName: string }>) =>
      Promise.resolve(
        rows.map((r) => {
          leases.set(r.id, { id: r.id, secretId: r.secretId, clusterId: r.clusterId, state: 'intent', roleName: r.roleName });
          return {
            id: r.id,
            secretId: r.secretId,
            clusterId: r.clusterId,
            serial: 1,
            roleName: r.roleName,
            expiresAt: new Date(Date.now() + 3600_000),
          };
        }),
      ),
    lockIntents: (_tx: unknown, ids: string[]) => Promise.resolve(ids.filter((id) => leases.get(id)?.state === 'intent')),
    activate: (_tx: unknown, items: Array<{ id: string; sealedValueId: string }>) =>
      Promise.resolve(
        items.map((i) => {
          const l = leases.get(i.id)!;
          Object.assign(l, { state: 'active', sealed: i.sealedValueId });
          return { appId: 'a', clusterId: l.clusterId };
        }),
      ),
    failIntents: (items: Array<{ id: string; error: string }>) => {
      for (const i of items) Object.assign(leases.get(i.id)!, { state: 'failed', lastError: i.error });
      return Promise.resolve();
    },
  };
  const engine: CredentialEngine = {
    engine: 'postgresql',
    verify: () => Promise.reject(new Error('unused')),
    createRole: async (t, r: CreateRoleRequest) => {
      calls.set(t.id, (calls.get(t.id) ?? 0) + 1);
      const n = (inFlight.get(t.id) ?? 0) + 1;
      inFlight.set(t.id, n);
      maxInFlight.set(t.id, Math.max(maxInFlight.get(t.id) ?? 0, n));
      passwords.push(r.password);
      await new Promise((res) => setTimeout(res, opts.slowMs ?? 2));
      inFlight.set(t.id, inFlight.get(t.id)! - 1);
      if (opts.down?.has(t.id)) throw new CredentialEngineError('unreachable', 'cannot reach db:5432 (ECONNREFUSED)');
      roles.add(r.role);
    },
    revokeRole: () => Promise.resolve(),
    listRoles: () => Promise.resolve([...roles]),
    session: (t, fn) => {
      sessions.set(t.id, (sessions.get(t.id) ?? 0) + 1);
      return fn({ createRole: (r) => engine.createRole(t, r), revokeRole: (r) => engine.revokeRole(t, r) });
    },
  };
  const targets: CredentialTargets = {
    describe: (_tx, _p, name) => Promise.resolve(refs.find((r) => r.name === name) ?? null),
    target: (_tx, _p, name) => {
      const ref = refs.find((r) => r.name === name)!;
      return Promise.resolve({
        id: ref.id,
        host: 'db',
        port: 5432,
        database: 'orders',
        username: 'admin',
        tlsMode: 'require',
        rolePrefix: ref.rolePrefix,
        adminPassword: Buffer.from('admin-pw'),
      });
    },
    targetById: () => Promise.reject(new Error('unused')),
    engineFor: () => engine,
    all: () => Promise.resolve(refs),
  };
  let sealed = 0;
  const sealer = {
    seal: (items: ValueToSeal[]) => {
      sealedPayloads.push(...items.map((i) => Buffer.from(i.value)));
      return Promise.resolve(items.map(() => `sv-${sealed++}`));
    },
  };
  const hsm = { generateRandom: (n: number) => Promise.resolve(randomBytes(n)) };
  const membership = { leasesActivated: () => Promise.resolve(new Map()), enqueue: () => Promise.resolve() };
  const uow = { run: <T>(fn: (tx: unknown) => Promise<T>) => fn({}) };
  const audited: string[] = [];
  const audit = {
    record: (action: string, outcome: string) => {
      audited.push(`${action}:${outcome}`);
      return Promise.resolve();
    },
  };
  const counter = () => ({ inc: () => undefined });
  const metrics = { leasesIssued: counter(), leasesFailed: counter() };
  const config = { leases: { deadlineSeconds: 600, sweepIntervalMs: 5_000, fault: 'none' }, hsm: { faultInjection: false } };
  const logger = { setContext: () => undefined, info: () => undefined, warn: () => undefined };
  const issuer = new LeaseIssuer(
    repo as unknown as LeasesRepository,
    targets,
    sealer as unknown as SealedValueService,
    hsm as unknown as HsmService,
    membership as unknown as MembershipService,
    uow as unknown as UnitOfWork,
    audit as unknown as LeaseAudit,
    metrics as unknown as MetricsService,
    config as unknown as RuntimeConfig,
    logger as unknown as PinoLogger,
  );
  return { issuer, leases, roles, maxInFlight, calls, sessions, sealedPayloads, passwords, audited, refs };
}

describe('LeaseIssuer', () => {
  it('issues every pair: intent, role, then active with its sealed keys', async () => {
    const w = world({ clusters: 20 });
    expect(await w.issuer.issue()).toBe(40);
    const all = [...w.leases.values()];
    expect(all.every((l) => l.state === 'active' && l.sealed)).toBe(true);
    expect(new Set(all.map((l) => l.roleName)).size).toBe(40);
    for (const l of all) expect(w.roles.has(l.roleName)).toBe(true);
    expect(w.audited.filter((a) => a === 'lease.issue:success')).toHaveLength(40);
    // The sealed payload holds the rendered keys; every password buffer was zeroed afterwards.
    const payload = JSON.parse(w.sealedPayloads[0]!.toString()) as { data: Record<string, string> };
    expect(Buffer.from(payload.data.password!, 'base64').toString()).toMatch(/^[A-Za-z0-9]{40}$/);
    for (const p of w.passwords) expect(p.every((b) => b === 0)).toBe(true);
  });

  it('a connection that is down fails its own leases with the reason; the other connection is not held back', async () => {
    const w = world({ clusters: 30, down: new Set(['conn-0']), slowMs: 5 });
    expect(await w.issuer.issue()).toBe(30);
    const byState = (secret: string) => [...w.leases.values()].filter((l) => l.secretId === secret);
    expect(
      byState('s-orders-db').every((l) => l.state === 'failed' && l.lastError === 'unreachable: cannot reach db:5432 (ECONNREFUSED)'),
    ).toBe(true);
    expect(byState('s-billing-db').every((l) => l.state === 'active')).toBe(true);
    expect(w.audited.filter((a) => a === 'lease.issue:failed')).toHaveLength(30);
  });

  it('once a target is unreachable, the rest of its batch fails at once (no connect timeout each)', async () => {
    const w = world({ clusters: 100, down: new Set(['conn-0']), slowMs: 20 });
    expect(await w.issuer.issue()).toBe(100);
    // The calls already in flight when the first failed; none started after it.
    expect(w.calls.get('conn-0')).toBeLessThanOrEqual(2 * ENGINE_CONCURRENCY);
    expect(w.calls.get('conn-1')).toBe(100);
    const orders = [...w.leases.values()].filter((l) => l.secretId === 's-orders-db');
    expect(orders).toHaveLength(100);
    expect(orders.every((l) => l.state === 'failed' && l.lastError === 'unreachable: cannot reach db:5432 (ECONNREFUSED)')).toBe(true);
  });

  it('runs engine calls in parallel per connection, at most ENGINE_CONCURRENCY at once, one session (login) per runner', async () => {
    const w = world({ clusters: 50, slowMs: 10 });
    await w.issuer.issue();
    for (const ref of w.refs) {
      expect(w.maxInFlight.get(ref.id)).toBe(ENGINE_CONCURRENCY);
      expect(w.sessions.get(ref.id)).toBe(ENGINE_CONCURRENCY);
    }
  });

  it('activates a batch as soon as its roles exist, before the last role of the round is created', async () => {
    const w = world({ clusters: 250, slowMs: 2 });
    const activeWhenLastCreated: number[] = [];
    const created = w.roles.add.bind(w.roles);
    w.roles.add = (role: string) => {
      if (w.roles.size === 249) activeWhenLastCreated.push([...w.leases.values()].filter((l) => l.state === 'active').length);
      return created(role);
    };
    expect(await w.issuer.issue()).toBe(500);
    expect(activeWhenLastCreated[0]).toBeGreaterThan(0);
  });

  it('a crash after the roles were created leaves intents (the revocation sweep takes them over), never an active lease', async () => {
    const w = world({ clusters: 3 });
    w.issuer.faults.afterRoles = () => Promise.reject(new Error('killed'));
    expect(await w.issuer.issue()).toBe(0);
    const all = [...w.leases.values()];
    expect(all.every((l) => l.state === 'intent')).toBe(true);
    expect(all.every((l) => w.roles.has(l.roleName))).toBe(true);
  });
});
