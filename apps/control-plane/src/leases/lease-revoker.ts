import { Inject, Injectable } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { RuntimeConfig } from '../config/runtime-config.js';
import type { ConnectionTarget, CredentialEngineError } from '../connections/engines/credential-engine.js';
import { UnitOfWork } from '../database/transaction.js';
import { MembershipService } from '../delivery/membership.service.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { CREDENTIAL_TARGETS, type CredentialTargets } from './credential-targets.js';
import { LeaseAudit } from './lease-audit.js';
import {
  isLeaseRoleName,
  backoffSeconds,
  byCause,
  eachBounded,
  eachOnSessions,
  ENGINE_CONCURRENCY,
  retryTransient,
  safeError,
  targetDown,
  withTimeout,
} from './lease-work.js';
import { LeasesRepository, type RevokeClaim } from './leases.repository.js';

const BATCH = 500;
/** Revoked and failed leases are kept this long (the lease views show them), then deleted with their ciphertext. */
const RETENTION_DAYS = 7;

/**
 * Revocation, level-triggered (docs/dynamic-secrets.md, "Revocation"): each sweep first starts
 * the grace period of superseded leases whose successor the cluster applied, then moves to
 * `revoking` every lease that must go (no longer desired, expired, past its grace, or an intent
 * whose issuer died), then revokes the due `revoking` ones through the engine — DROP ROLE is
 * idempotent, so a revocation repeated after a crash is harmless. A lease is `revoked` only once
 * the engine said so; until then it stays `revoking` and is retried with backoff.
 */
@Injectable()
export class LeaseRevoker {
  private stopped = false;

  constructor(
    @Inject(LeasesRepository) private readonly repo: LeasesRepository,
    @Inject(CREDENTIAL_TARGETS) private readonly targets: CredentialTargets,
    @Inject(MembershipService) private readonly membership: MembershipService,
    @Inject(UnitOfWork) private readonly uow: UnitOfWork,
    @Inject(LeaseAudit) private readonly audit: LeaseAudit,
    @Inject(MetricsService) private readonly metrics: MetricsService,
    @Inject(RuntimeConfig) private readonly config: RuntimeConfig,
    @Inject(PinoLogger) private readonly logger: PinoLogger,
  ) {
    logger.setContext('leases');
  }

  stop(): void {
    this.stopped = true;
  }

  /**
   * Starts due grace periods and moves what must go to `revoking` (clusters that held it are
   * rebuilt without it). Cheap and Sigil-side only: the sweep runs it on its own each tick, so an
   * expired credential is withdrawn on time even while a revocation pass waits on a slow target.
   */
  async markDue(): Promise<void> {
    await this.repo.startGrace();
    await this.mark();
  }

  /** One revocation pass; returns how many roles this replica revoked. */
  async revoke(): Promise<number> {
    await this.markDue();
    let revoked = 0;
    for (;;) {
      if (this.stopped) return revoked;
      const claims = await this.repo.claimRevocations(BATCH, this.config.leases.deadlineSeconds);
      if (claims.length === 0) return revoked;
      const groups = new Map<string, RevokeClaim[]>();
      for (const c of claims)
        groups.set(`${c.projectId}/${c.connectionId}`, [...(groups.get(`${c.projectId}/${c.connectionId}`) ?? []), c]);
      const counts = await Promise.all([...groups.values()].map((g) => this.revokeGroup(g)));
      revoked += counts.reduce((a, b) => a + b, 0);
      if (claims.length < BATCH) return revoked;
    }
  }

  /** Moves what must be revoked to `revoking`; clusters that held an active one are rebuilt without it. */
  private async mark(): Promise<void> {
    for (;;) {
      const { marked, moved } = await this.uow.run(async (tx) => {
        const marked = await this.repo.markRevocations(tx, BATCH);
        const wasActive = marked.filter((m) => m.was === 'active').map((m) => m.clusterId);
        return { marked, moved: await this.membership.rebuildIn(tx, wasActive) };
      });
      await this.membership.enqueue(moved);
      if (marked.length < BATCH || this.stopped) return;
    }
  }

  private async revokeGroup(claims: RevokeClaim[]): Promise<number> {
    const { projectId, connectionId } = claims[0]!;
    let target: ConnectionTarget;
    try {
      target = await this.targets.targetById(undefined, projectId, connectionId);
    } catch (err) {
      await this.failed(claims, err);
      return 0;
    }
    try {
      const ref = (await this.targets.all()).find((r) => r.id === connectionId);
      const engine = this.targets.engineFor(ref?.engine ?? 'postgresql');
      const done: RevokeClaim[] = [];
      const failed: Array<{ claim: RevokeClaim; err: unknown }> = [];
      const timeoutMs = (this.config.leases.deadlineSeconds * 1000) / 2;
      let down: CredentialEngineError | undefined; // then the rest fails at once (targetDown)
      await eachOnSessions(
        claims,
        ENGINE_CONCURRENCY,
        (fn) => engine.session(target, fn),
        async (claim, session) => {
          if (down) {
            failed.push({ claim, err: down });
            return 'next';
          }
          try {
            await withTimeout(
              retryTransient(() => session.revokeRole({ role: claim.roleName, statements: claim.revocationStatements })),
              timeoutMs,
              'revoking the role',
            );
            done.push(claim);
            return 'next';
          } catch (err) {
            down ??= targetDown(err);
            failed.push({ claim, err });
            return 'reopen';
          }
        },
        (claim, err) => failed.push({ claim, err }),
      );
      await this.repo.markRevoked(done.map((c) => c.id));
      this.metrics.leasesRevoked.inc(done.length);
      for (const [err, items] of byCause(failed))
        await this.failed(
          items.map((f) => f.claim),
          err,
        );
      await Promise.all(
        done.map((c) =>
          this.audit.record('lease.revoke', 'success', 200, c, {
            cluster: c.cluster,
            serial: c.serial,
            role: c.roleName,
            reason: c.revokeReason,
          }),
        ),
      ).catch((err: unknown) => this.logger.warn({ err: safeError(err) }, 'auditing revoked leases failed'));
      return done.length;
    } finally {
      target.adminPassword.fill(0);
    }
  }

  private async failed(claims: RevokeClaim[], err: unknown): Promise<void> {
    const error = safeError(err);
    await this.repo.revokeFailed(
      claims.map((c) => ({ id: c.id, error, backoffSeconds: backoffSeconds(c.attempts + 1, this.config.leases.sweepIntervalMs) })),
    );
    this.metrics.leaseRevocationFailures.inc(claims.length);
    this.logger.warn({ error, leases: claims.length, project: claims[0]?.project }, 'revoking leases failed; retried with backoff');
  }

  /**
   * The reaper: per connection, roles that a lease of this connection names, but no live one
   * (the role of an issue whose activation never happened and whose intent was already taken
   * over, or created after its lease was given up), are revoked. Every role Sigil creates is
   * named by a lease row first (the intent), so a role with the prefix and no row at all is not
   * Sigil's (another installation's, or a person's): it is reported, never dropped. Then old
   * revoked leases are deleted.
   */
  async reap(): Promise<number> {
    let reaped = 0;
    for (const ref of await this.targets.all()) {
      if (this.stopped) break;
      let target: ConnectionTarget | undefined;
      try {
        target = await this.targets.targetById(undefined, ref.projectId, ref.id);
        const engine = this.targets.engineFor(ref.engine);
        const roles = (await engine.listRoles(target)).filter((r) => isLeaseRoleName(ref.rolePrefix, r));
        const known = await this.repo.rolesKnown(ref.id, roles);
        const orphans = roles.filter((r) => known.get(r)?.live === false);
        const strangers = roles.filter((r) => !known.has(r));
        if (strangers.length > 0)
          this.logger.warn(
            { connection: ref.name, project: ref.projectId, roles: strangers.slice(0, 10), count: strangers.length },
            'roles with the connection role prefix that no lease names: not Sigil-made, left alone',
          );
        const t = target;
        await eachBounded(orphans, ENGINE_CONCURRENCY, async (role) => {
          try {
            await retryTransient(() => engine.revokeRole(t, { role, statements: known.get(role)?.revocationStatements ?? [] }));
            reaped++;
            this.metrics.leasesRevoked.inc();
            await this.audit.record('lease.reap', 'success', 200, {}, { role, reason: 'orphan' }).catch(() => undefined);
          } catch (err) {
            this.logger.warn({ error: safeError(err), connection: ref.name, role }, 'reaping a role failed; the next pass retries');
          }
        });
      } catch (err) {
        this.logger.warn({ error: safeError(err), connection: ref.name }, 'reaper pass over a connection failed; the next pass retries');
      } finally {
        target?.adminPassword.fill(0);
      }
    }
    await this.repo
      .deleteOld(RETENTION_DAYS, 10_000)
      .catch((err: unknown) => this.logger.warn({ err: safeError(err) }, 'lease retention failed'));
    return reaped;
  }
}
