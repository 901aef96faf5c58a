import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';

export interface AppClusterStatusRow {
  clusterId: string;
  cluster: string;
  clusterState: string;
  published: boolean;
  generation: string;
  appliedGeneration: string;
  deliveryError: string | null;
  failedSecrets: number;
  failure: string | null;
  /** Dynamic secrets of the app this cluster holds no active credential of yet. */
  leasesMissing: number;
  /** Why, when the last attempt failed: the lease's last error. */
  leaseFailure: string | null;
  changedAt: Date;
}

/** Where each app's delivery stands, cluster by cluster: what publication status (and its long poll) reads. */
@Injectable()
export class PublicationStatusRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  /** Per cluster, where `appId` stands: its entry, what the agent applied, and failures it reported. */
  appStatus(appId: string): Promise<AppClusterStatusRow[]> {
    return this.ds.query(
      `SELECT c.id AS "clusterId", c.name AS cluster, c.state AS "clusterState", ca.published, ca.generation::text AS generation,
              c.applied_generation::text AS "appliedGeneration", c.delivery_error AS "deliveryError", ca.changed_at AS "changedAt",
              count(ss.*) FILTER (WHERE ss.state IN ('failed', 'conflict'))::int AS "failedSecrets",
              min(ss.reason || ': ' || ss.namespace || '/' || ss.name) FILTER (WHERE ss.state IN ('failed', 'conflict')) AS failure,
              coalesce(min(dl.missing), 0)::int AS "leasesMissing", min(dl.failure) AS "leaseFailure"
         FROM cluster_apps ca
         JOIN clusters c ON c.id = ca.cluster_id
         LEFT JOIN secret_statuses ss
           ON ss.cluster_id = ca.cluster_id AND ss.generation >= ca.generation
          AND ss.secret_id IN (SELECT id FROM secrets WHERE app_id = ca.app_id)
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
        WHERE ca.app_id = $1
        GROUP BY c.id, c.name, c.state, ca.published, ca.generation, c.applied_generation, c.delivery_error, ca.changed_at
        ORDER BY c.name`,
      [appId],
    );
  }
}
