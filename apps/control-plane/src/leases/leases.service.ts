import { Inject, Injectable } from '@nestjs/common';
import { AppsService } from '../apps/apps.service.js';
import type { Actor } from '../auth/policy.js';
import { ClustersService } from '../clusters/clusters.service.js';
import { toPage, type Page } from '../common/http.js';
import { dns1123LabelProblem, dns1123SubdomainProblem } from '../common/kubernetes-names.js';
import { UnitOfWork, type Tx } from '../database/transaction.js';
import { MembershipService } from '../delivery/membership.service.js';
import { CREDENTIAL_TARGETS, type CredentialTargets } from './credential-targets.js';
import { LEASE_STATES, type LeaseState } from './lease.entity.js';
import { LeaseSweep } from './lease-sweep.js';
import { LeasesError, LeasesErrorCode } from './leases.errors.js';
import { LeasesRepository, type LeaseFilter, type LeaseRow } from './leases.repository.js';

export type { LeaseRow, LeaseState };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface LeaseQuery {
  cluster?: string;
  secret?: string;
  state?: string;
}

/**
 * Dynamic secrets' leases for the API and for the secrets feature: the views (per app, per
 * cluster), a revocation by hand, and the checks the secrets feature needs when a dynamic
 * secret is created. The sweeps (LeaseSweep) do the work; this only records and wakes them.
 */
@Injectable()
export class LeasesService {
  constructor(
    @Inject(LeasesRepository) private readonly repo: LeasesRepository,
    @Inject(CREDENTIAL_TARGETS) private readonly targets: CredentialTargets,
    @Inject(AppsService) private readonly apps: AppsService,
    @Inject(ClustersService) private readonly clusters: ClustersService,
    @Inject(MembershipService) private readonly membership: MembershipService,
    @Inject(UnitOfWork) private readonly uow: UnitOfWork,
    @Inject(LeaseSweep) private readonly sweep: LeaseSweep,
  ) {}

  /** Whether the project has the database connection `name` (a dynamic secret may name only those). */
  /** With `tx`: held until it ends (a dynamic secret's insert; a concurrent delete then sees it). */
  async connectionExists(projectId: string, name: string, tx?: Tx): Promise<boolean> {
    return (await this.targets.describe(tx, projectId, name, tx !== undefined)) !== null;
  }

  /** Something leases depend on changed (a dynamic secret created or deleted): sweep now. */
  wake(): void {
    this.sweep.wake();
  }

  async listForApp(actor: Actor, project: string, app: string, q: LeaseQuery, after: string | undefined, limit: number) {
    const r = await this.apps.resolve(actor, project, app);
    const filter: LeaseFilter = { appId: r.app.id, ...(await this.filter(actor, q)) };
    return { ...r, page: await this.page(filter, after, limit) };
  }

  /** A cluster's leases, as `actor` may see them: the cluster within its scope, and only its project's leases for a project token. */
  async listForCluster(actor: Actor, cluster: string, q: Omit<LeaseQuery, 'cluster'>, after: string | undefined, limit: number) {
    const c = await this.clusters.getVisible(actor, cluster);
    const filter: LeaseFilter = { clusterId: c.id, ...(await this.filter(actor, q)) };
    if (actor.projectId) filter.projectId = actor.projectId;
    return { cluster: c, page: await this.page(filter, after, limit) };
  }

  /**
   * Revokes a lease now: it becomes `revoking` (the sweep, woken at once, drops the role); the
   * issuer then issues a fresh credential if the cluster should still hold one. Revoking a lease
   * that is already revoking or revoked changes nothing.
   */
  async revoke(actor: Actor, project: string, app: string, id: string): Promise<{ lease: LeaseRow; project: string; app: string }> {
    const r = await this.apps.resolve(actor, project, app);
    if (!UUID.test(id)) throw notFound(id);
    const moved = await this.uow.run(async (tx) => {
      const was = await this.repo.markManualRevoke(tx, r.app.id, id);
      if (was === null) throw notFound(id);
      if (was === 'intent' || was === 'failed')
        throw new LeasesError(
          LeasesErrorCode.LeaseNotRevocable,
          was === 'intent'
            ? 'the lease is being issued; revoke it once it is active'
            : "the lease failed and holds no credential (any role it may have left is the reaper's)",
        );
      const lease = (await this.repo.list({ id }, undefined, 1))[0]!;
      return was === 'active' ? this.membership.rebuildIn(tx, [lease.clusterId]) : new Map<string, string>();
    });
    await this.membership.enqueue(moved);
    this.sweep.wake();
    return { lease: (await this.repo.findOne(r.app.id, id))!, project: r.project.name, app: r.app.name };
  }

  private async filter(actor: Actor, q: LeaseQuery): Promise<Omit<LeaseFilter, 'appId'>> {
    const f: Omit<LeaseFilter, 'appId'> = {};
    if (q.state !== undefined) {
      if (!(LEASE_STATES as readonly string[]).includes(q.state))
        throw new LeasesError(LeasesErrorCode.InvalidLeaseFilter, `state must be one of ${LEASE_STATES.join(', ')}`);
      f.state = q.state as LeaseState;
    }
    if (q.secret !== undefined) {
      if (dns1123SubdomainProblem(q.secret)) throw new LeasesError(LeasesErrorCode.InvalidLeaseFilter, 'secret must be a secret name');
      f.secret = q.secret;
    }
    if (q.cluster !== undefined) {
      if (dns1123LabelProblem(q.cluster)) throw new LeasesError(LeasesErrorCode.InvalidLeaseFilter, 'cluster must be a cluster name');
      f.clusterId = (await this.clusters.getVisible(actor, q.cluster)).id;
    }
    return f;
  }

  private async page(filter: LeaseFilter, after: string | undefined, limit: number): Promise<Page<LeaseRow>> {
    if (after !== undefined && !UUID.test(after))
      throw new LeasesError(LeasesErrorCode.InvalidLeaseFilter, 'after must be the `next` value of a previous page');
    return toPage(await this.repo.list(filter, after, limit + 1), limit, (l) => l.id);
  }
}

const notFound = (id: string) => new LeasesError(LeasesErrorCode.LeaseNotFound, `lease ${JSON.stringify(id.slice(0, 64))} not found`);
