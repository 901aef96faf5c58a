import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { DeliveryState } from './publications.dto.js';

export interface AppClusterStatusRow {
  clusterId: string;
  cluster: string;
  state: DeliveryState;
  reason: string | null;
  generation: string;
  appliedGeneration: string;
  changedAt: Date;
}

/** A status row with what the fleet view shows besides: labels, agent, and the app's secrets on that cluster. */
export interface FleetStatusRow extends AppClusterStatusRow {
  labels: Record<string, string>;
  lastSeenAt: Date | null;
  agentVersion: string | null;
  secrets: Array<{ name: string; version: number; applied: boolean }>;
}

export interface DeliveryFilter {
  /** Only these states (any when absent). */
  states?: DeliveryState[];
  /** Case-insensitive substring of the cluster name. */
  name?: string;
  /** Equality selector on the cluster's labels. */
  labels?: Record<string, string>;
}

export type StateCounts = Record<DeliveryState, number>;

/**
 * Per cluster of app $1: its entry, what the agent applied, the failures it reported, and the
 * resulting state and reason — computed here, in SQL, so that filtering by state and paging
 * happen in PostgreSQL. The one definition of a delivery's state (docs/delivery.md, "Status"):
 *
 * - unpublished: `deprovisioned` once the agent applied ≥ the entry's generation, or at once for
 *   a cluster that never enrolled (it received nothing); `deprovisioning` before;
 * - published, a dynamic secret with no active credential on the cluster: `failed` with the
 *   lease's last error when its latest attempt failed, `pending` otherwise;
 * - published, applied ≥ the entry's generation: `failed` when the agent reported a Secret of the
 *   app failed or in conflict at that generation or later, else `provisioned`;
 * - not applied yet: `failed` while the delivery job keeps failing (`DeliveryFailed: …`), else
 *   `pending`.
 *
 * `where` is ANDed to the selection (columns of `c` clusters and `ca` cluster_apps).
 */
function statusSql(where = 'true'): string {
  return `
    SELECT s.*,
           CASE
             WHEN NOT s.published THEN
               CASE WHEN s.reached OR s.cluster_state = 'registered' THEN 'deprovisioned' ELSE 'deprovisioning' END
             WHEN s.leases_missing > 0 THEN CASE WHEN s.lease_failure IS NOT NULL THEN 'failed' ELSE 'pending' END
             WHEN s.reached AND s.failed_secrets > 0 THEN 'failed'
             WHEN s.reached THEN 'provisioned'
             WHEN s.delivery_error IS NOT NULL THEN 'failed'
             ELSE 'pending'
           END AS state,
           CASE
             WHEN NOT s.published THEN NULL
             WHEN s.leases_missing > 0 THEN s.lease_failure
             WHEN s.reached AND s.failed_secrets > 0 THEN s.failure
             WHEN s.reached THEN NULL
             WHEN s.delivery_error IS NOT NULL THEN 'DeliveryFailed: ' || s.delivery_error
             ELSE NULL
           END AS reason
      FROM (
        SELECT c.id, c.name, c.labels, c.state AS cluster_state, c.applied_generation, c.delivery_error,
               c.agent_version, c.last_seen_at, ca.published, ca.generation, ca.changed_at,
               c.applied_generation >= ca.generation AS reached,
               coalesce(f.failed_secrets, 0) AS failed_secrets, f.failure,
               coalesce(dl.missing, 0) AS leases_missing, dl.failure AS lease_failure
          FROM cluster_apps ca
          JOIN clusters c ON c.id = ca.cluster_id
          LEFT JOIN LATERAL (
            SELECT count(*) AS failed_secrets, min(ss.reason || ': ' || ss.namespace || '/' || ss.name) AS failure
              FROM secret_statuses ss
             WHERE ss.cluster_id = ca.cluster_id AND ss.generation >= ca.generation AND ss.state IN ('failed', 'conflict')
               AND ss.secret_id IN (SELECT id FROM secrets WHERE app_id = ca.app_id)
          ) f ON true
          -- dynamic secrets: a cluster without an active lease of one is not provisioned yet, and
          -- failed when the latest attempt failed (its reason is the lease's last error)
          LEFT JOIN LATERAL (
            SELECT count(*) AS missing,
                   min('LeaseFailed: ' || ds.name || ': ' || latest.last_error) FILTER (WHERE latest.state = 'failed') AS failure
              FROM secrets ds
              LEFT JOIN LATERAL (
                SELECT l.state, l.last_error FROM credential_leases l
                 WHERE l.secret_id = ds.id AND l.cluster_id = ca.cluster_id ORDER BY l.serial DESC LIMIT 1
              ) latest ON true
             WHERE ds.app_id = ca.app_id AND ds.dynamic IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM credential_leases al
                                WHERE al.secret_id = ds.id AND al.cluster_id = ca.cluster_id AND al.state = 'active')
          ) dl ON ca.published
         WHERE ca.app_id = $1 AND ${where}
      ) s`;
}

/** The columns a status row is read with (see AppClusterStatusRow). */
const STATUS_COLUMNS = `st.id AS "clusterId", st.name AS cluster, st.state, st.reason, st.generation::text AS generation,
       st.applied_generation::text AS "appliedGeneration", st.changed_at AS "changedAt"`;

/**
 * The app's secrets on each cluster of `st`: the current version (for a dynamic secret, the
 * serial of the cluster's active credential, 0 without one), and whether the cluster applied
 * it — its snapshot row carries that version, at a generation the agent acknowledged
 * (`applied_generation ≥ row generation`; a row marked changed, generation 0, is not applied),
 * and the agent reported no failure for it at that generation or later. No values: names and
 * numbers only.
 */
const SECRETS_LATERAL = `
  LEFT JOIN LATERAL (
    SELECT coalesce(json_agg(json_build_object('name', v.name, 'version', v.version, 'applied', v.applied) ORDER BY v.name), '[]'::json) AS secrets
      FROM (
        SELECT sec.name, cur.version,
               coalesce(cs.secret_version = cur.version AND cs.generation > 0 AND st.applied_generation >= cs.generation
                        AND NOT EXISTS (SELECT 1 FROM secret_statuses ss
                                         WHERE ss.cluster_id = st.id AND ss.secret_id = sec.id
                                           AND ss.state IN ('failed', 'conflict') AND ss.generation >= cs.generation), false) AS applied
          FROM secrets sec
          CROSS JOIN LATERAL (
            SELECT CASE WHEN sec.dynamic IS NULL THEN sec.current_version
                        ELSE coalesce((SELECT l.serial FROM credential_leases l
                                        WHERE l.secret_id = sec.id AND l.cluster_id = st.id AND l.state = 'active'), 0) END AS version
          ) cur
          LEFT JOIN cluster_secrets cs ON cs.cluster_id = st.id AND cs.secret_id = sec.id
         WHERE sec.app_id = $1
      ) v
  ) sx ON true`;

const FLEET_COLUMNS = `${STATUS_COLUMNS}, st.labels, st.last_seen_at AS "lastSeenAt", st.agent_version AS "agentVersion", sx.secrets`;

/** Where each app's delivery stands, cluster by cluster: what publication status (and its long poll) reads. */
@Injectable()
export class PublicationStatusRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  /** Per cluster, where `appId` stands, by cluster name. */
  appStatus(appId: string): Promise<AppClusterStatusRow[]> {
    return this.ds.query(`SELECT ${STATUS_COLUMNS} FROM (${statusSql()}) st ORDER BY st.name`, [appId]);
  }

  /** How many of the app's clusters are in each state (unfiltered), in one statement. */
  async stateCounts(appId: string): Promise<StateCounts> {
    const rows: Array<{ state: DeliveryState; n: number }> = await this.ds.query(
      `SELECT st.state, count(*)::int AS n FROM (${statusSql()}) st GROUP BY st.state`,
      [appId],
    );
    const counts: StateCounts = { pending: 0, provisioned: 0, failed: 0, deprovisioning: 0, deprovisioned: 0 };
    for (const r of rows) counts[r.state] = r.n;
    return counts;
  }

  /**
   * One page of the app's clusters matching `filter`, by name after `after`: `limit` rows at
   * most, in one statement (the state is computed in SQL, so its filter is too).
   */
  fleetPage(appId: string, filter: DeliveryFilter, after: string | undefined, limit: number): Promise<FleetStatusRow[]> {
    const params: unknown[] = [appId];
    const where: string[] = [];
    const param = (v: unknown) => `$${params.push(v)}`;
    if (after !== undefined) where.push(`c.name > ${param(after)}`);
    if (filter.name) where.push(`strpos(lower(c.name), ${param(filter.name.toLowerCase())}) > 0`);
    if (filter.labels) where.push(`c.labels @> ${param(JSON.stringify(filter.labels))}::jsonb`);
    const states = filter.states?.length ? `WHERE s0.state = ANY(${param(filter.states)}::text[])` : '';
    return this.ds.query(
      `SELECT ${FLEET_COLUMNS}
         FROM (SELECT * FROM (${statusSql(where.join(' AND ') || 'true')}) s0 ${states} ORDER BY s0.name LIMIT ${param(limit)}) st
         ${SECRETS_LATERAL}
        ORDER BY st.name`,
      params,
    );
  }

  /** The current rows of those of `clusterIds` the app is (or was) published to, by name, in one statement. */
  fleetRows(appId: string, clusterIds: string[]): Promise<FleetStatusRow[]> {
    if (clusterIds.length === 0) return Promise.resolve([]);
    return this.ds.query(
      `SELECT ${FLEET_COLUMNS} FROM (${statusSql('ca.cluster_id = ANY($2::uuid[])')}) st ${SECRETS_LATERAL} ORDER BY st.name`,
      [appId, clusterIds],
    );
  }
}
