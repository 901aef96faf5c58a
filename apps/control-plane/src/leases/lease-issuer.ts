import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { encodeSecretPayload } from '@sigil/envelope';
import { PinoLogger } from 'nestjs-pino';
import { RuntimeConfig } from '../config/runtime-config.js';
import type { ConnectionTarget, CredentialEngineError } from '../connections/engines/credential-engine.js';
import { UnitOfWork } from '../database/transaction.js';
import { MembershipService } from '../delivery/membership.service.js';
import { HsmService } from '../hsm/hsm.service.js';
import { SealedValueService } from '../keys/sealed-values.service.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { CREDENTIAL_TARGETS, type CredentialTargets } from './credential-targets.js';
import { LeaseAudit } from './lease-audit.js';
import {
  backoffSeconds,
  byCause,
  eachOnSessions,
  ENGINE_CONCURRENCY,
  retryTransient,
  roleName,
  safeError,
  targetDown,
  withTimeout,
} from './lease-work.js';
import { LeasesRepository, type IssueCandidate, type Intent } from './leases.repository.js';
import { PASSWORD_ALPHABET, PASSWORD_LENGTH, renderKeys } from './templates.js';

/** Pairs read per round; a full round is followed at once by another. */
const BATCH = 500;
/** Leases sealed and activated per transaction (one HSM call seals them all). */
const ACTIVATE_BATCH = 100;

/** Test seams: where a crash would leave an intent without a role, or a role without activation. */
export interface IssueFaults {
  afterIntents?: (intents: Intent[]) => Promise<void>;
  afterRoles?: (intents: Intent[]) => Promise<void>;
}

interface Created {
  intent: Intent;
  candidate: IssueCandidate;
  password: Buffer;
}

/**
 * Issues credentials (docs/dynamic-secrets.md, "Leases"), crash-safe in three steps:
 * (1) one statement records the intents, role names chosen; (2) the engine creates each role
 * with an HSM-random password, VALID UNTIL the lease's expiry; (3) one transaction seals the
 * rendered keys, activates the leases, supersedes their predecessors and moves the clusters to
 * a new generation (delivery then builds and pushes). A crash after (1) or (2) leaves intents
 * the revocation sweep takes over at their deadline (DROP ROLE IF EXISTS). Connections are
 * worked on in parallel, each with at most ENGINE_CONCURRENCY calls at once: one that is down
 * fails its own leases only.
 */
@Injectable()
export class LeaseIssuer {
  faults: IssueFaults = {};
  private stopped = false;

  constructor(
    @Inject(LeasesRepository) private readonly repo: LeasesRepository,
    @Inject(CREDENTIAL_TARGETS) private readonly targets: CredentialTargets,
    @Inject(SealedValueService) private readonly sealer: SealedValueService,
    @Inject(HsmService) private readonly hsm: HsmService,
    @Inject(MembershipService) private readonly membership: MembershipService,
    @Inject(UnitOfWork) private readonly uow: UnitOfWork,
    @Inject(LeaseAudit) private readonly audit: LeaseAudit,
    @Inject(MetricsService) private readonly metrics: MetricsService,
    @Inject(RuntimeConfig) private readonly config: RuntimeConfig,
    @Inject(PinoLogger) private readonly logger: PinoLogger,
  ) {
    logger.setContext('leases');
    const fault = config.leases.fault;
    if (config.hsm.faultInjection && fault !== 'none') {
      // Never settles: the process is killed while the issue stands between two steps.
      const pause = () => {
        this.logger.warn({ fault }, 'lease issue paused by fault injection');
        return new Promise<void>(() => undefined);
      };
      if (fault === 'pause-after-intents') this.faults.afterIntents = pause;
      else this.faults.afterRoles = pause;
    }
  }

  stop(): void {
    this.stopped = true;
  }

  /** Issues what is needed now; returns how many credentials this replica activated. */
  async issue(): Promise<number> {
    let issued = 0;
    // Each pair once per sweep: one that failed waits for its backoff, not for this loop.
    const passed = new Set<string>();
    for (;;) {
      const due = (await this.repo.issueCandidates(BATCH + passed.size)).filter((c) => !passed.has(pairKey(c)));
      if (due.length === 0 || this.stopped) return issued;
      const batch = due.slice(0, BATCH);
      for (const c of batch) passed.add(pairKey(c));
      const groups = new Map<string, IssueCandidate[]>();
      for (const c of batch) {
        const k = `${c.projectId}/${c.spec.connection}`;
        groups.set(k, [...(groups.get(k) ?? []), c]);
      }
      const counts = await Promise.all(
        [...groups.values()].map((g) =>
          this.issueGroup(g).catch((err: unknown) => {
            this.logger.warn({ err: safeError(err), project: g[0]!.project, connection: g[0]!.spec.connection }, 'issuing leases failed');
            return 0;
          }),
        ),
      );
      issued += counts.reduce((a, b) => a + b, 0);
    }
  }

  /** The pairs of one connection of one project. */
  private async issueGroup(candidates: IssueCandidate[]): Promise<number> {
    const { projectId, project, spec } = candidates[0]!;
    const ref = await this.targets.describe(undefined, projectId, spec.connection);
    if (!ref) {
      this.logger.warn({ project, connection: spec.connection }, 'dynamic secrets name a connection the project does not have');
      return 0;
    }
    const rows = candidates.map((c) => {
      const id = randomUUID();
      return {
        id,
        secretId: c.secretId,
        clusterId: c.clusterId,
        connectionId: ref.id,
        roleName: roleName(ref.rolePrefix, id),
        attempts: c.attempts,
      };
    });
    // (1) Before any role exists.
    const intents = await this.repo.insertIntents(rows, this.config.leases.deadlineSeconds);
    if (intents.length === 0) return 0;
    await this.faults.afterIntents?.(intents);
    const byPair = new Map(candidates.map((c) => [pairKey(c), c]));
    const candidateOf = (i: Intent) => byPair.get(pairKey(i))!;
    let target: ConnectionTarget;
    try {
      target = await this.targets.target(undefined, projectId, spec.connection);
    } catch (err) {
      await this.fail(
        intents.map((i) => ({ intent: i, candidate: candidateOf(i) })),
        err,
      );
      return 0;
    }
    const created: Created[] = [];
    try {
      const engine = this.targets.engineFor(ref.engine);
      const failed: Array<{ intent: Intent; candidate: IssueCandidate; err: unknown }> = [];
      // The engine's own timeouts bound each call; this bounds the whole call well inside the deadline.
      const timeoutMs = (this.config.leases.deadlineSeconds * 1000) / 2;
      // (2) The roles, a bounded number at once, each runner on one session (one login for many
      // roles). Once a call says the target is down, the rest of the group fails at once (targetDown).
      let down: CredentialEngineError | undefined;
      // (3) Sealed and activated a batch at a time, as soon as a batch of roles exists (the first
      // credentials go out while the rest are still being created), one batch after another.
      let activation = Promise.resolve(0);
      let pending: Created[] = [];
      const flush = () => {
        const chunk = pending;
        pending = [];
        activation = activation.then(async (n) => {
          await this.faults.afterRoles?.(chunk.map((c) => c.intent));
          return n + (await this.activate(chunk, target));
        });
        activation.catch(() => undefined); // awaited below; until then a crash fault must not count as unhandled
      };
      await eachOnSessions(
        intents,
        ENGINE_CONCURRENCY,
        (fn) => engine.session(target, fn),
        async (intent, session) => {
          const candidate = candidateOf(intent);
          if (down) {
            failed.push({ intent, candidate, err: down });
            return 'next';
          }
          let password: Buffer | undefined;
          try {
            password = await this.password();
            const pw = password;
            await withTimeout(
              retryTransient(() =>
                session.createRole({
                  role: intent.roleName,
                  password: pw,
                  expiresAt: new Date(intent.expiresAt),
                  statements: candidate.spec.creationStatements,
                }),
              ),
              timeoutMs,
              'creating the role',
            );
            const c = { intent, candidate, password };
            created.push(c);
            pending.push(c);
            if (pending.length >= ACTIVATE_BATCH) flush();
            return 'next';
          } catch (err) {
            password?.fill(0);
            down ??= targetDown(err);
            failed.push({ intent, candidate, err });
            return 'reopen';
          }
        },
        (intent, err) => {
          down ??= targetDown(err);
          failed.push({ intent, candidate: candidateOf(intent), err });
        },
      );
      for (const [err, items] of byCause(failed)) await this.fail(items, err);
      if (pending.length > 0) flush();
      return await activation;
    } finally {
      target.adminPassword.fill(0);
      for (const c of created) c.password.fill(0);
    }
  }

  /** A password of PASSWORD_LENGTH characters of PASSWORD_ALPHABET from the HSM's random bytes (rejection sampling). */
  private async password(): Promise<Buffer> {
    const out = Buffer.alloc(PASSWORD_LENGTH);
    const n = PASSWORD_ALPHABET.length;
    const limit = 256 - (256 % n);
    let filled = 0;
    while (filled < PASSWORD_LENGTH) {
      const random = await this.hsm.generateRandom(PASSWORD_LENGTH * 2);
      for (const b of random) {
        if (filled === PASSWORD_LENGTH) break;
        if (b < limit) out[filled++] = PASSWORD_ALPHABET.charCodeAt(b % n);
      }
      random.fill(0);
    }
    return out;
  }

  private async activate(created: Created[], target: ConnectionTarget): Promise<number> {
    const values: Array<Map<string, Buffer>> = [];
    let done: Array<{ appId: string; clusterId: string }> = [];
    let activatedIds = new Set<string>();
    try {
      const moved = await this.uow.run(async (tx) => {
        const locked = new Set(
          await this.repo.lockIntents(
            tx,
            created.map((c) => c.intent.id),
          ),
        );
        const live = created.filter((c) => locked.has(c.intent.id));
        const items = live.map((c) => {
          const keys = renderKeys(c.candidate.spec.keys, {
            username: c.intent.roleName,
            password: c.password,
            host: target.host,
            port: target.port,
            database: target.database,
            tlsMode: target.tlsMode,
          });
          values.push(keys);
          return {
            value: encodeSecretPayload(keys),
            context: {
              projectId: c.candidate.projectId,
              app: c.candidate.app,
              secret: c.candidate.secret,
              secretId: c.candidate.secretId,
              // The agent opens it as that secret's version `serial` (valueAad, unchanged).
              version: c.intent.serial,
            },
          };
        });
        const sealed = await this.sealer.seal(items, tx);
        done = await this.repo.activate(
          tx,
          live.map((c, i) => ({ id: c.intent.id, sealedValueId: sealed[i]! })),
        );
        activatedIds = new Set(live.map((c) => c.intent.id));
        return this.membership.leasesActivated(tx, done);
      });
      await this.membership.enqueue(moved);
    } catch (err) {
      // Left as intents: the revocation sweep takes them over at their deadline (the roles exist).
      this.logger.warn(
        { err: safeError(err), leases: created.length },
        'activating leases failed; their roles are revoked at the deadline',
      );
      return 0;
    } finally {
      for (const v of values) for (const b of v.values()) b.fill(0);
    }
    const ok = created.filter((c) => activatedIds.has(c.intent.id));
    this.metrics.leasesIssued.inc(ok.length);
    await Promise.all(
      ok.map((c) =>
        this.audit.record('lease.issue', 'success', 201, c.candidate, {
          cluster: c.candidate.cluster,
          serial: c.intent.serial,
          role: c.intent.roleName,
        }),
      ),
    ).catch((err: unknown) => this.logger.warn({ err: safeError(err) }, 'auditing issued leases failed'));
    return done.length;
  }

  private async fail(items: Array<{ intent: Intent; candidate: IssueCandidate }>, err: unknown): Promise<void> {
    const error = safeError(err);
    await this.repo.failIntents(
      items.map(({ intent, candidate }) => ({
        id: intent.id,
        error,
        attempts: candidate.attempts + 1,
        backoffSeconds: backoffSeconds(candidate.attempts + 1, this.config.leases.sweepIntervalMs),
      })),
    );
    this.metrics.leasesFailed.inc(items.length);
    this.logger.warn(
      { error, project: items[0]?.candidate.project, connection: items[0]?.candidate.spec.connection, leases: items.length },
      'issuing leases failed; retried with backoff',
    );
    await Promise.all(
      items.map(({ intent, candidate }) =>
        this.audit.record('lease.issue', 'failed', 503, candidate, {
          cluster: candidate.cluster,
          serial: intent.serial,
          role: intent.roleName,
        }),
      ),
    ).catch(() => undefined);
  }
}

const pairKey = (p: { secretId: string; clusterId: string }) => `${p.secretId}/${p.clusterId}`;
