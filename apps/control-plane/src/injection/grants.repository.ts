import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';

/** What the agents of one cluster reported for one secret and one namespace/service account, merged. */
export interface GrantRow {
  clusterId: string;
  secretId: string;
  namespace: string;
  serviceAccount: string;
  /** The version of the latest grant (by lastAt). */
  version: number;
  /** How many fetches these reports stand for. */
  grants: number;
  lastPod: string;
  firstAt: Date;
  lastAt: Date;
}

/** One row of an app's consumption view. */
export interface ConsumptionRow {
  cluster: string;
  secret: string;
  version: number;
  namespace: string;
  serviceAccount: string;
  grants: number;
  lastPod: string;
  firstAt: Date;
  lastAt: Date;
}

/** Where a consumption page starts: the last row of the previous page, by the view's order. */
export interface ConsumptionCursor {
  cluster: string;
  secret: string;
  namespace: string;
  serviceAccount: string;
}

/** injection_grants: what agents handed to which pods (never a value), per cluster, secret and namespace/service account. */
@Injectable()
export class GrantsRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  /**
   * Records merged grants of many clusters in ONE statement (callers merge by key first: an
   * upsert may not touch a row twice). Only grants of a secret of an inject app that the
   * cluster's built snapshot holds, to a namespace and service account among the app's consumers,
   * are kept — an agent cannot grow the table with invented or foreign ids or identities. Returns how many rows were kept; the rest were ignored.
   */
  async record(rows: GrantRow[]): Promise<number> {
    if (rows.length === 0) return 0;
    const [r] = await this.ds.query<Array<{ n: number }>>(
      `WITH x AS (
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int[], $6::bigint[], $7::text[],
                              $8::timestamptz[], $9::timestamptz[]) AS x(c, s, n, sa, v, g, pod, f, l)
       ), kept AS (
         SELECT x.* FROM x
           JOIN cluster_secrets cs ON cs.cluster_id = x.c AND cs.secret_id = x.s
           JOIN apps a ON a.id = cs.app_id AND a.delivery_mode = 'inject'
          -- and only to one of the app's consumers: the table holds at most one row per consumer and pod identity
          WHERE EXISTS (SELECT 1 FROM jsonb_array_elements(a.consumers) AS e(consumer)
                         WHERE e.consumer->>'namespace' = x.n
                           AND (e.consumer->>'serviceAccount' = '*' OR e.consumer->>'serviceAccount' = x.sa))
          -- in key order, as every batch locks them: concurrent batches cannot deadlock
          ORDER BY x.c, x.s, x.n, x.sa
       ), saved AS (
         INSERT INTO injection_grants AS ig (cluster_id, secret_id, namespace, service_account, version, grants, last_pod, first_at, last_at)
         SELECT c, s, n, sa, v, g, pod, f, l FROM kept
         ON CONFLICT (cluster_id, secret_id, namespace, service_account) DO UPDATE
           SET grants = ig.grants + EXCLUDED.grants,
               version = CASE WHEN EXCLUDED.last_at >= ig.last_at THEN EXCLUDED.version ELSE ig.version END,
               last_pod = CASE WHEN EXCLUDED.last_at >= ig.last_at THEN EXCLUDED.last_pod ELSE ig.last_pod END,
               first_at = LEAST(ig.first_at, EXCLUDED.first_at),
               last_at = GREATEST(ig.last_at, EXCLUDED.last_at)
         RETURNING 1
       )
       SELECT count(*)::int AS n FROM saved`,
      [
        rows.map((g) => g.clusterId),
        rows.map((g) => g.secretId),
        rows.map((g) => g.namespace),
        rows.map((g) => g.serviceAccount),
        rows.map((g) => g.version),
        rows.map((g) => g.grants),
        rows.map((g) => g.lastPod),
        rows.map((g) => g.firstAt),
        rows.map((g) => g.lastAt),
      ],
    );
    return r?.n ?? 0;
  }

  /** The consumption of one app of one project, by cluster, secret, namespace and service account (keyset-paged). */
  async consumption(projectId: string, appId: string, after: ConsumptionCursor | undefined, limit: number): Promise<ConsumptionRow[]> {
    const rows = await this.ds.query<Array<Omit<ConsumptionRow, 'grants'> & { grants: string }>>(
      `SELECT c.name AS cluster, s.name AS secret, g.version, g.namespace, g.service_account AS "serviceAccount",
              g.grants::text AS grants, g.last_pod AS "lastPod", g.first_at AS "firstAt", g.last_at AS "lastAt"
         FROM injection_grants g
         JOIN secrets s ON s.id = g.secret_id
         JOIN clusters c ON c.id = g.cluster_id
        WHERE s.project_id = $1 AND s.app_id = $2
          AND ($3::text IS NULL OR (c.name, s.name, g.namespace, g.service_account) > ($3::text, $4::text, $5::text, $6::text))
        ORDER BY c.name, s.name, g.namespace, g.service_account
        LIMIT $7`,
      [projectId, appId, after?.cluster ?? null, after?.secret ?? null, after?.namespace ?? null, after?.serviceAccount ?? null, limit],
    );
    return rows.map((r) => ({ ...r, grants: Number(r.grants) }));
  }
}
