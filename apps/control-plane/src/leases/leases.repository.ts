import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { managerOf, type Tx } from '../database/transaction.js';
import type { ConnectionRef } from './credential-targets.js';
import { LeaseEntity, type LeaseState } from './lease.entity.js';

/**
 * What the issuer reads of a dynamic secret's recipe (secrets.dynamic, validated by the secrets
 * feature at creation; declared here so leases/ does not depend on secrets/, which depends on it).
 */
export interface IssueSpec {
  connection: string;
  creationStatements: string[];
  keys: Record<string, string>;
}

/** A (dynamic secret, cluster) pair that needs a credential now: none yet, or the current one is due for renewal. */
export interface IssueCandidate {
  secretId: string;
  projectId: string;
  appId: string;
  clusterId: string;
  project: string;
  app: string;
  secret: string;
  cluster: string;
  spec: IssueSpec;
  /** Failed attempts in a row before this one (for the backoff). */
  attempts: number;
}

/** An intent row the issuer owns: it inserted it, so no other replica works on it. */
export interface Intent {
  id: string;
  secretId: string;
  clusterId: string;
  serial: number;
  roleName: string;
  expiresAt: Date;
}

/** A lease claimed for revocation, with what the engine needs (never a value). */
export interface RevokeClaim {
  id: string;
  projectId: string;
  appId: string;
  secretId: string;
  clusterId: string;
  connectionId: string;
  serial: number;
  roleName: string;
  revocationStatements: string[];
  attempts: number;
  revokeReason: string | null;
  /** Names for the audit log; null where the app, secret or cluster is gone. */
  project: string | null;
  app: string | null;
  secret: string | null;
  cluster: string | null;
}

/** What the revocation sweep's first step moved to `revoking`, and from where. */
export interface MarkedRevocation {
  id: string;
  clusterId: string;
  was: LeaseState;
  reason: string;
}

export interface LeaseRow extends LeaseEntity {
  projectName: string;
  appName: string;
  secret: string | null;
  cluster: string | null;
}

export interface LeaseFilter {
  id?: string;
  appId?: string;
  clusterId?: string;
  projectId?: string;
  state?: LeaseState;
  secret?: string;
}

/**
 * Whether lease `l`'s (secret, cluster) is still wanted: the secret exists and is dynamic, its
 * app is published to the cluster, and the cluster is enrolled (not disabled or deleted).
 */
const DESIRED = `EXISTS (
  SELECT 1 FROM secrets ds
    JOIN cluster_apps dca ON dca.app_id = ds.app_id AND dca.cluster_id = l.cluster_id AND dca.published
    JOIN clusters dc ON dc.id = l.cluster_id AND dc.state = 'enrolled'
   WHERE ds.id = l.secret_id AND ds.dynamic IS NOT NULL)`;

/** States whose role may exist and must not be reaped. */
export const LIVE_STATES: readonly LeaseState[] = ['intent', 'active', 'superseded', 'revoking'];

/**
 * credential_leases: every statement here is set-based (a batch of leases per statement) and
 * claims rows with unique indexes or FOR NO KEY UPDATE SKIP LOCKED, so any number of worker
 * replicas sweep at once without issuing or revoking anything twice.
 */
@Injectable()
export class LeasesRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  private em(tx: Tx | undefined) {
    return managerOf(this.ds, tx);
  }

  /**
   * Pairs that need a credential now: published to an enrolled cluster, no issue in flight, and
   * no active lease before its renewal time; a pair whose last attempt failed waits out its
   * backoff. Names are for audit and logs.
   */
  issueCandidates(limit: number): Promise<IssueCandidate[]> {
    return this.ds.query(
      `SELECT s.id AS "secretId", s.project_id AS "projectId", s.app_id AS "appId", c.id AS "clusterId",
              p.name AS project, a.name AS app, s.name AS secret, c.name AS cluster, s.dynamic AS spec,
              CASE WHEN latest.state = 'failed' THEN latest.attempts ELSE 0 END AS attempts
         FROM cluster_apps ca
         JOIN clusters c ON c.id = ca.cluster_id AND c.state = 'enrolled'
         JOIN secrets s ON s.app_id = ca.app_id AND s.dynamic IS NOT NULL
         JOIN apps a ON a.id = s.app_id
         JOIN projects p ON p.id = s.project_id
         LEFT JOIN LATERAL (
           SELECT l.state, l.attempts, l.next_attempt_at FROM credential_leases l
            WHERE l.secret_id = s.id AND l.cluster_id = c.id ORDER BY l.serial DESC LIMIT 1
         ) latest ON true
        WHERE ca.published
          AND NOT EXISTS (
            SELECT 1 FROM credential_leases l WHERE l.secret_id = s.id AND l.cluster_id = c.id
               AND (l.state = 'intent' OR (l.state = 'active' AND l.renew_at > now())))
          AND NOT (latest.state IS NOT DISTINCT FROM 'failed' AND latest.next_attempt_at > now())
        ORDER BY s.id, c.id
        LIMIT $1`,
      [limit],
    );
  }

  /**
   * Writes the intents in one statement, re-checking in it that each pair still needs one (another
   * replica may have issued meanwhile). A pair with an intent already is skipped (the partial
   * unique index, ON CONFLICT DO NOTHING): only the returned rows belong to this caller. The
   * lifetime is the database's clock: now + ttl; renewal at expiry - renewBefore.
   */
  async insertIntents(
    rows: Array<{ id: string; secretId: string; clusterId: string; connectionId: string; roleName: string; attempts: number }>,
    deadlineSeconds: number,
  ): Promise<Intent[]> {
    if (rows.length === 0) return [];
    const result = await this.ds.query<Array<Intent & { serial: number }>>(
      `INSERT INTO credential_leases (id, project_id, app_id, secret_id, cluster_id, connection_id, serial, role_name, state,
                                      revocation_statements, expires_at, renew_at, grace_seconds, attempts, next_attempt_at)
       SELECT x.id, s.project_id, s.app_id, s.id, x.c, x.conn,
              coalesce((SELECT max(l.serial) FROM credential_leases l WHERE l.secret_id = s.id AND l.cluster_id = x.c), 0) + 1,
              x.role, 'intent', ARRAY(SELECT jsonb_array_elements_text(s.dynamic -> 'revocationStatements')),
              now() + make_interval(secs => (s.dynamic ->> 'ttlSeconds')::int),
              now() + make_interval(secs => (s.dynamic ->> 'ttlSeconds')::int - (s.dynamic ->> 'renewBeforeSeconds')::int),
              (s.dynamic ->> 'graceSeconds')::int, x.attempts, now() + make_interval(secs => $7)
         FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::int[]) AS x(id, s, c, conn, role, attempts)
         JOIN secrets s ON s.id = x.s AND s.dynamic IS NOT NULL
         JOIN clusters c ON c.id = x.c AND c.state = 'enrolled'
        WHERE EXISTS (SELECT 1 FROM cluster_apps ca WHERE ca.cluster_id = x.c AND ca.app_id = s.app_id AND ca.published)
          AND NOT EXISTS (
            SELECT 1 FROM credential_leases l WHERE l.secret_id = s.id AND l.cluster_id = x.c
               AND (l.state = 'intent' OR (l.state = 'active' AND l.renew_at > now())))
       ON CONFLICT DO NOTHING
       RETURNING id, secret_id AS "secretId", cluster_id AS "clusterId", serial, role_name AS "roleName", expires_at AS "expiresAt"`,
      [
        rows.map((r) => r.id),
        rows.map((r) => r.secretId),
        rows.map((r) => r.clusterId),
        rows.map((r) => r.connectionId),
        rows.map((r) => r.roleName),
        rows.map((r) => r.attempts),
        deadlineSeconds,
      ],
    );
    return result;
  }

  /** Of `ids`, the intents still in flight, locked for activation (a recovery pass that took one over has moved it on). */
  async lockIntents(tx: Tx, ids: string[]): Promise<string[]> {
    if (ids.length === 0) return [];
    const rows = await this.em(tx).query<Array<{ id: string }>>(
      `SELECT id FROM credential_leases WHERE id = ANY($1::uuid[]) AND state = 'intent' ORDER BY id FOR NO KEY UPDATE`,
      [ids],
    );
    return rows.map((r) => r.id);
  }

  /**
   * The step that makes credentials deliverable, for locked intents: the previous active lease
   * of each pair becomes superseded (its revocation waits for the cluster to apply the new one),
   * the intent becomes active with its sealed value. Returns the activated leases' pairs.
   */
  async activate(tx: Tx, leases: Array<{ id: string; sealedValueId: string }>): Promise<Array<{ appId: string; clusterId: string }>> {
    if (leases.length === 0) return [];
    const ids = leases.map((l) => l.id);
    await this.em(tx).query(
      `UPDATE credential_leases o SET state = 'superseded', updated_at = now()
         FROM credential_leases n
        WHERE n.id = ANY($1::uuid[]) AND o.secret_id = n.secret_id AND o.cluster_id = n.cluster_id AND o.state = 'active'`,
      [ids],
    );
    const [rows] = await this.em(tx).query<[Array<{ appId: string; clusterId: string }>, number]>(
      `UPDATE credential_leases l SET state = 'active', sealed_value_id = x.sv, issued_at = now(), last_error = NULL, updated_at = now()
         FROM unnest($1::uuid[], $2::uuid[]) AS x(id, sv)
        WHERE l.id = x.id AND l.state = 'intent'
        RETURNING l.app_id AS "appId", l.cluster_id AS "clusterId"`,
      [ids, leases.map((l) => l.sealedValueId)],
    );
    return rows;
  }

  /** Issues that failed (the engine refused or was unreachable): tried again after `backoffSeconds`. */
  async failIntents(items: Array<{ id: string; error: string; attempts: number; backoffSeconds: number }>): Promise<void> {
    if (items.length === 0) return;
    await this.ds.query(
      `UPDATE credential_leases l SET state = 'failed', last_error = x.e, attempts = x.a,
              next_attempt_at = now() + make_interval(secs => x.b), updated_at = now()
         FROM unnest($1::uuid[], $2::text[], $3::int[], $4::int[]) AS x(id, e, a, b)
        WHERE l.id = x.id AND l.state = 'intent'`,
      [items.map((i) => i.id), items.map((i) => i.error), items.map((i) => i.attempts), items.map((i) => i.backoffSeconds)],
    );
  }

  /**
   * Superseded leases whose successor the cluster applied start their grace period now
   * (level-triggered: an ack seen late starts it late, never early). Applied means what agents
   * report: the cluster's applied generation reached the generation at which its snapshot row
   * of the secret took the newer serial, and no failure or conflict is reported for that secret
   * (agents write status rows only for those: an applied Secret is told by the generation).
   */
  async startGrace(): Promise<number> {
    const [, n] = await this.ds.query<[unknown, number]>(
      `UPDATE credential_leases l SET revoke_after = now() + make_interval(secs => l.grace_seconds), updated_at = now()
        WHERE l.state = 'superseded' AND l.revoke_after IS NULL
          AND EXISTS (SELECT 1 FROM cluster_secrets cs JOIN clusters c ON c.id = cs.cluster_id
                       WHERE cs.cluster_id = l.cluster_id AND cs.secret_id = l.secret_id AND cs.secret_version > l.serial
                         AND c.applied_generation >= cs.generation)
          AND NOT EXISTS (SELECT 1 FROM secret_statuses ss
                           WHERE ss.cluster_id = l.cluster_id AND ss.secret_id = l.secret_id AND ss.state IN ('failed', 'conflict'))`,
    );
    return n;
  }

  /**
   * Moves what must be revoked to `revoking`, due now: leases no longer desired (unpublished,
   * cluster disabled or deleted, secret or app deleted), expired ones, superseded ones past
   * their grace, and intents past their deadline (the issuer died between intent and
   * activation: the role may exist). Rows another transaction holds are left for the next sweep.
   * Returns the leases that were active (their clusters must be rebuilt without them).
   */
  async markRevocations(tx: Tx, limit: number): Promise<MarkedRevocation[]> {
    const [rows] = await this.em(tx).query<[MarkedRevocation[], number]>(
      `WITH due AS (
         SELECT l.id, l.state AS was,
                CASE WHEN l.state = 'intent' THEN 'interrupted'
                     WHEN NOT ${DESIRED} THEN 'not_desired'
                     WHEN l.expires_at <= now() THEN 'expired'
                     ELSE 'superseded' END AS reason
           FROM credential_leases l
          WHERE (l.state = 'intent' AND l.next_attempt_at <= now())
             OR (l.state IN ('active', 'superseded') AND (l.expires_at <= now() OR NOT ${DESIRED}))
             OR (l.state = 'superseded' AND l.revoke_after <= now())
          LIMIT $1
          FOR NO KEY UPDATE OF l SKIP LOCKED
       )
       UPDATE credential_leases l SET state = 'revoking', revoke_reason = due.reason, next_attempt_at = now(), updated_at = now()
         FROM due WHERE l.id = due.id
       RETURNING l.id, l.cluster_id AS "clusterId", due.was, due.reason`,
      [limit],
    );
    return rows;
  }

  /** A person revoked a lease: due for revocation now. Returns what it was (null: no such lease of the app). */
  async markManualRevoke(tx: Tx, appId: string, id: string): Promise<LeaseState | null> {
    const [row] = await this.em(tx).query<Array<{ state: LeaseState }>>(
      `SELECT state FROM credential_leases WHERE id = $1 AND app_id = $2 FOR NO KEY UPDATE`,
      [id, appId],
    );
    if (!row) return null;
    if (row.state === 'active' || row.state === 'superseded')
      await this.em(tx).query(
        `UPDATE credential_leases SET state = 'revoking', revoke_reason = 'manual', next_attempt_at = now(), updated_at = now() WHERE id = $1`,
        [id],
      );
    return row.state;
  }

  /**
   * Claims revoking leases that are due (new, retried after a failure, or left by a revoker that
   * died): their deadline moves on, so no other replica takes them while this one works.
   */
  async claimRevocations(limit: number, deadlineSeconds: number): Promise<RevokeClaim[]> {
    const [rows] = await this.ds.query<[RevokeClaim[], number]>(
      `UPDATE credential_leases l SET next_attempt_at = now() + make_interval(secs => $2), updated_at = now()
        WHERE l.id IN (SELECT id FROM credential_leases WHERE state = 'revoking' AND next_attempt_at <= now()
                        ORDER BY next_attempt_at LIMIT $1 FOR NO KEY UPDATE SKIP LOCKED)
       RETURNING l.id, l.project_id AS "projectId", l.app_id AS "appId", l.secret_id AS "secretId", l.cluster_id AS "clusterId",
                 l.connection_id AS "connectionId", l.serial, l.role_name AS "roleName",
                 l.revocation_statements AS "revocationStatements", l.attempts, l.revoke_reason AS "revokeReason",
                 (SELECT name FROM projects WHERE id = l.project_id) AS project, (SELECT name FROM apps WHERE id = l.app_id) AS app,
                 (SELECT name FROM secrets WHERE id = l.secret_id) AS secret, (SELECT name FROM clusters WHERE id = l.cluster_id) AS cluster`,
      [limit, deadlineSeconds],
    );
    return rows;
  }

  async markRevoked(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.ds.query(
      `UPDATE credential_leases SET state = 'revoked', revoked_at = now(), last_error = NULL, updated_at = now()
        WHERE id = ANY($1::uuid[]) AND state = 'revoking'`,
      [ids],
    );
  }

  async revokeFailed(items: Array<{ id: string; error: string; backoffSeconds: number }>): Promise<void> {
    if (items.length === 0) return;
    await this.ds.query(
      `UPDATE credential_leases l SET attempts = l.attempts + 1, last_error = x.e,
              next_attempt_at = now() + make_interval(secs => x.b), updated_at = now()
         FROM unnest($1::uuid[], $2::text[], $3::int[]) AS x(id, e, b)
        WHERE l.id = x.id AND l.state = 'revoking'`,
      [items.map((i) => i.id), items.map((i) => i.error), items.map((i) => i.backoffSeconds)],
    );
  }

  /** Of `roles` of a connection, those a lease names and how to revoke them; `live` ones are not the reaper's. */
  async rolesKnown(connectionId: string, roles: string[]): Promise<Map<string, { live: boolean; revocationStatements: string[] }>> {
    if (roles.length === 0) return new Map();
    const rows = await this.ds.query<Array<{ role: string; live: boolean; statements: string[] }>>(
      `SELECT DISTINCT ON (role_name) role_name AS role, state = ANY($3::text[]) AS live, revocation_statements AS statements
         FROM credential_leases WHERE connection_id = $1 AND role_name = ANY($2::text[])
        ORDER BY role_name, (state = ANY($3::text[])) DESC`,
      [connectionId, roles, LIVE_STATES],
    );
    return new Map(rows.map((r) => [r.role, { live: r.live, revocationStatements: r.statements }]));
  }

  /**
   * Deletes revoked and failed leases older than `days` (their ciphertext goes with them, by
   * trigger), unless a cluster's snapshot still points at their sealed value.
   */
  async deleteOld(days: number, limit: number): Promise<number> {
    const [, n] = await this.ds.query<[unknown, number]>(
      `DELETE FROM credential_leases WHERE id IN (
         SELECT l.id FROM credential_leases l
          WHERE l.state IN ('revoked', 'failed') AND l.updated_at < now() - make_interval(days => $1)
            AND NOT EXISTS (SELECT 1 FROM cluster_secrets cs WHERE cs.sealed_value_id = l.sealed_value_id)
          LIMIT $2)`,
      [days, limit],
    );
    return n;
  }

  /** Leases by `filter`, newest first, after the lease `after` (its id). */
  list(filter: LeaseFilter, after: string | undefined, limit: number): Promise<LeaseRow[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: string, v: unknown) => {
      params.push(v);
      where.push(sql.replace('?', `$${params.length}`));
    };
    if (filter.id) add('l.id = ?', filter.id);
    if (filter.appId) add('l.app_id = ?', filter.appId);
    if (filter.clusterId) add('l.cluster_id = ?', filter.clusterId);
    if (filter.projectId) add('l.project_id = ?', filter.projectId);
    if (filter.state) add('l.state = ?', filter.state);
    if (filter.secret) add('s.name = ?', filter.secret);
    if (after) add('(l.created_at, l.id) < (SELECT created_at, id FROM credential_leases WHERE id = ?)', after);
    params.push(limit);
    return this.ds
      .query<Array<Record<string, unknown>>>(
        `SELECT l.*, s.name AS secret_name, c.name AS cluster_name, p.name AS project_name, a.name AS app_name
           FROM credential_leases l LEFT JOIN secrets s ON s.id = l.secret_id LEFT JOIN clusters c ON c.id = l.cluster_id
           LEFT JOIN projects p ON p.id = l.project_id LEFT JOIN apps a ON a.id = l.app_id
          WHERE ${where.length ? where.join(' AND ') : 'true'}
          ORDER BY l.created_at DESC, l.id DESC LIMIT $${params.length}`,
        params,
      )
      .then((rows) =>
        rows.map((r) => ({
          ...this.ds.getRepository(LeaseEntity).create({
            id: r.id as string,
            projectId: r.project_id as string,
            appId: r.app_id as string,
            secretId: r.secret_id as string,
            clusterId: r.cluster_id as string,
            connectionId: r.connection_id as string,
            serial: r.serial as number,
            roleName: r.role_name as string,
            state: r.state as LeaseState,
            revocationStatements: r.revocation_statements as string[],
            sealedValueId: r.sealed_value_id as string | null,
            issuedAt: r.issued_at as Date | null,
            expiresAt: r.expires_at as Date,
            renewAt: r.renew_at as Date,
            graceSeconds: r.grace_seconds as number,
            revokeAfter: r.revoke_after as Date | null,
            revokedAt: r.revoked_at as Date | null,
            revokeReason: r.revoke_reason as string | null,
            attempts: r.attempts as number,
            nextAttemptAt: r.next_attempt_at as Date,
            lastError: r.last_error as string | null,
            createdAt: r.created_at as Date,
            updatedAt: r.updated_at as Date,
          }),
          projectName: (r.project_name as string | null) ?? '',
          appName: (r.app_name as string | null) ?? '',
          secret: r.secret_name as string | null,
          cluster: r.cluster_name as string | null,
        })),
      );
  }

  findOne(appId: string, id: string): Promise<LeaseRow | undefined> {
    return this.list({ appId, id }, undefined, 1).then((rows) => rows[0]);
  }

  /**
   * What keeps connection `connectionId` from being deleted (read in the delete's transaction):
   * dynamic secrets that name it, and leases whose roles may still exist in its database.
   */
  async connectionUsers(tx: Tx, connectionId: string): Promise<string[]> {
    const rows = await this.em(tx).query<Array<{ u: string }>>(
      `SELECT 'dynamic secret ' || a.name || '/' || s.name AS u
         FROM database_connections dc
         JOIN secrets s ON s.project_id = dc.project_id AND s.dynamic ->> 'connection' = dc.name
         JOIN apps a ON a.id = s.app_id
        WHERE dc.id = $1
       UNION ALL
       SELECT count(*) || ' leases not yet revoked' FROM credential_leases
        WHERE connection_id = $1 AND state = ANY($2::text[]) HAVING count(*) > 0
       LIMIT 20`,
      [connectionId, LIVE_STATES],
    );
    return rows.map((r) => r.u);
  }

  /** Leases of the connection whose roles may still exist on its server. */
  async liveLeaseCount(tx: Tx, connectionId: string): Promise<number> {
    const rows = await this.em(tx).query<Array<{ n: number }>>(
      `SELECT count(*)::int AS n FROM credential_leases WHERE connection_id = $1 AND state = ANY($2::text[])`,
      [connectionId, LIVE_STATES],
    );
    return rows[0]?.n ?? 0;
  }

  /** Every registered connection, without any secret (the reaper's work list). */
  allConnections(): Promise<ConnectionRef[]> {
    return this.ds.query(
      `SELECT id, project_id AS "projectId", name, engine, role_prefix AS "rolePrefix" FROM database_connections ORDER BY id`,
    );
  }

  /** Active leases per state, for the gauge. */
  async countByState(): Promise<Map<string, number>> {
    const rows = await this.ds.query<Array<{ state: string; n: number }>>(
      `SELECT state, count(*)::int AS n FROM credential_leases WHERE state IN ('intent', 'active', 'superseded', 'revoking') GROUP BY state`,
    );
    return new Map(rows.map((r) => [r.state, r.n]));
  }
}
