import { Inject, Injectable } from '@nestjs/common';
import { DataSource, type EntityManager } from 'typeorm';
import type { LabelSelector } from './label-selector.js';

export interface Placement {
  appId: string;
  clusters: string[];
  selectors: LabelSelector[];
  excluded: string[];
  updatedAt: Date;
}

export interface ClusterLabels {
  id: string;
  name: string;
  labels: Record<string, string>;
}

/** One secret a cluster should hold, as the delivery job computes it. */
export interface DesiredRow {
  secretId: string;
  appId: string;
  version: number;
  sealedValueId: string;
  rootKeyVersion: number;
  wrappedDek: Buffer;
}

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
  changedAt: Date;
}

/** Serialises every change of who-gets-what (publish, unpublish, relabel, project selector). */
const MEMBERSHIP_LOCK = 0x5161_0005;

@Injectable()
export class DeliveryRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  /** Outside any transaction. */
  get manager(): EntityManager {
    return this.ds.manager;
  }

  /** A transaction holding the membership lock. */
  membershipTransaction<T>(fn: (em: EntityManager) => Promise<T>): Promise<T> {
    return this.ds.transaction(async (em) => {
      await em.query('SELECT pg_advisory_xact_lock($1)', [MEMBERSHIP_LOCK]);
      return fn(em);
    });
  }

  transaction<T>(fn: (em: EntityManager) => Promise<T>): Promise<T> {
    return this.ds.transaction(fn);
  }

  /** Takes the membership lock inside a caller's transaction (held until it ends). */
  async lockMembership(em: EntityManager): Promise<void> {
    await em.query('SELECT pg_advisory_xact_lock($1)', [MEMBERSHIP_LOCK]);
  }

  async placement(em: EntityManager, appId: string): Promise<Placement | undefined> {
    const rows = await em.query<Placement[]>(
      `SELECT app_id AS "appId", clusters, selectors, excluded, updated_at AS "updatedAt" FROM placements WHERE app_id = $1`,
      [appId],
    );
    return rows[0];
  }

  async placementsOfProject(em: EntityManager, projectId: string | undefined): Promise<Array<Placement & { projectId: string }>> {
    return em.query(
      `SELECT p.app_id AS "appId", p.clusters, p.selectors, p.excluded, p.updated_at AS "updatedAt", a.project_id AS "projectId"
         FROM placements p JOIN apps a ON a.id = p.app_id ${projectId ? 'WHERE a.project_id = $1' : ''}`,
      projectId ? [projectId] : [],
    );
  }

  async savePlacement(em: EntityManager, p: Omit<Placement, 'updatedAt'>): Promise<void> {
    await em.query(
      `INSERT INTO placements (app_id, clusters, selectors, excluded) VALUES ($1, $2, $3, $4)
       ON CONFLICT (app_id) DO UPDATE SET clusters = $2, selectors = $3, excluded = $4, updated_at = now(),
         version = placements.version + 1`,
      [p.appId, p.clusters, JSON.stringify(p.selectors), p.excluded],
    );
  }

  async projectSelectors(em: EntityManager): Promise<Map<string, LabelSelector | null>> {
    const rows = await em.query<Array<{ id: string; s: LabelSelector | null }>>('SELECT id, cluster_selector AS s FROM projects');
    return new Map(rows.map((r) => [r.id, r.s]));
  }

  async setProjectSelector(em: EntityManager, projectId: string, selector: LabelSelector | null): Promise<void> {
    await em.query('UPDATE projects SET cluster_selector = $2, updated_at = now(), version = version + 1 WHERE id = $1', [
      projectId,
      selector === null ? null : JSON.stringify(selector),
    ]);
  }

  clusters(em: EntityManager, ids?: string[]): Promise<ClusterLabels[]> {
    return ids
      ? em.query('SELECT id, name, labels FROM clusters WHERE id = ANY($1::uuid[])', [ids])
      : em.query('SELECT id, name, labels FROM clusters');
  }

  async publishedClusters(em: EntityManager, appId: string): Promise<Set<string>> {
    const rows = await em.query<Array<{ id: string }>>('SELECT cluster_id AS id FROM cluster_apps WHERE app_id = $1 AND published', [
      appId,
    ]);
    return new Set(rows.map((r) => r.id));
  }

  async publishedApps(em: EntityManager, clusterId: string): Promise<Set<string>> {
    const rows = await em.query<Array<{ id: string }>>('SELECT app_id AS id FROM cluster_apps WHERE cluster_id = $1 AND published', [
      clusterId,
    ]);
    return new Set(rows.map((r) => r.id));
  }

  /**
   * Publishes (or unpublishes) `appId` on `clusterIds`: each cluster's desired generation grows,
   * and the app's entry records that generation. Returns the clusters with their new generation.
   */
  async setPublished(em: EntityManager, appId: string, clusterIds: string[], published: boolean): Promise<Map<string, string>> {
    if (clusterIds.length === 0) return new Map();
    const bumped = await this.bump(em, clusterIds);
    await em.query(
      `INSERT INTO cluster_apps (cluster_id, app_id, published, generation)
       SELECT c, $2, $3, g FROM unnest($1::uuid[], $4::bigint[]) AS v(c, g)
       ON CONFLICT (cluster_id, app_id) DO UPDATE SET published = $3, generation = EXCLUDED.generation, changed_at = now()`,
      [[...bumped.keys()], appId, published, [...bumped.values()]],
    );
    return bumped;
  }

  /** The app's content changed (a value rotated, rolled back, added or removed): every cluster holding it moves on. */
  async appContentChanged(em: EntityManager, appId: string): Promise<Map<string, string>> {
    const ids = [...(await this.publishedClusters(em, appId))];
    return this.setPublished(em, appId, ids, true);
  }

  /** Drops the app's rows from every cluster's snapshot; the next build adds them back (its wrapped keys stay cached). */
  async forgetSnapshotRows(em: EntityManager, appId: string): Promise<void> {
    await em.query('DELETE FROM cluster_secrets WHERE app_id = $1', [appId]);
  }

  /** The cluster must be rebuilt for reasons of its own (a new delivery key). */
  async bump(em: EntityManager, clusterIds: string[]): Promise<Map<string, string>> {
    const rows = await em.query<[Array<{ id: string; g: string }>, number]>(
      'UPDATE clusters SET desired_generation = desired_generation + 1 WHERE id = ANY($1::uuid[]) RETURNING id, desired_generation AS g',
      [clusterIds],
    );
    return new Map(rows[0].map((r) => [r.id, r.g]));
  }

  /**
   * Enrolled clusters whose built snapshot is behind what they should hold (the reconciler's
   * work list). Clusters not enrolled yet have nothing to build for: enrollment triggers it.
   */
  behind(limit: number): Promise<Array<{ id: string; g: string }>> {
    return this.ds.query(
      `SELECT id, desired_generation AS g FROM clusters
        WHERE built_generation < desired_generation AND state = 'enrolled' ORDER BY updated_at LIMIT $1`,
      [limit],
    );
  }

  async generations(em: EntityManager, clusterId: string, lock = false): Promise<{ desired: bigint; built: bigint } | undefined> {
    const rows = await em.query<Array<{ d: string; b: string }>>(
      `SELECT desired_generation AS d, built_generation AS b FROM clusters WHERE id = $1 ${lock ? 'FOR UPDATE' : ''}`,
      [clusterId],
    );
    return rows[0] && { desired: BigInt(rows[0].d), built: BigInt(rows[0].b) };
  }

  /** Locks the cluster row for a build; its generations and the version of its active delivery key. */
  async lockForBuild(
    em: EntityManager,
    clusterId: string,
  ): Promise<{ desired: bigint; built: bigint; keyVersion: number | null } | undefined> {
    const rows = await em.query<Array<{ d: string; b: string; k: number | null }>>(
      `SELECT c.desired_generation AS d, c.built_generation AS b,
              (SELECT version FROM cluster_keys k WHERE k.cluster_id = c.id AND k.state = 'active') AS k
         FROM clusters c WHERE c.id = $1 FOR UPDATE OF c`,
      [clusterId],
    );
    return rows[0] && { desired: BigInt(rows[0].d), built: BigInt(rows[0].b), keyVersion: rows[0].k };
  }

  /** What the cluster should hold now: the current version of every secret of every app published to it. */
  desired(em: EntityManager, clusterId: string): Promise<DesiredRow[]> {
    return em.query(
      `SELECT s.id AS "secretId", s.app_id AS "appId", v.version, v.sealed_value_id AS "sealedValueId",
              sv.root_key_version AS "rootKeyVersion", sv.wrapped_dek AS "wrappedDek"
         FROM cluster_apps ca
         JOIN secrets s ON s.app_id = ca.app_id
         JOIN secret_versions v ON v.secret_id = s.id AND v.version = s.current_version
         JOIN sealed_values sv ON sv.id = v.sealed_value_id
        WHERE ca.cluster_id = $1 AND ca.published
        ORDER BY s.id`,
      [clusterId],
    );
  }

  async wrappedFor(em: EntityManager, clusterId: string, keyVersion: number, sealedValueIds: string[]): Promise<Set<string>> {
    const rows = await em.query<Array<{ id: string }>>(
      `SELECT sealed_value_id AS id FROM cluster_wrapped_keys
        WHERE cluster_id = $1 AND cluster_key_version = $2 AND sealed_value_id = ANY($3::uuid[])`,
      [clusterId, keyVersion, sealedValueIds],
    );
    return new Set(rows.map((r) => r.id));
  }

  async saveWrapped(em: EntityManager, clusterId: string, keyVersion: number, sealedValueIds: string[], wrapped: Buffer[]): Promise<void> {
    if (sealedValueIds.length === 0) return;
    await em.query(
      `INSERT INTO cluster_wrapped_keys (cluster_id, sealed_value_id, cluster_key_version, wrapped_dek)
       SELECT $1, s, $2, w FROM unnest($3::uuid[], $4::bytea[]) AS v(s, w) ON CONFLICT DO NOTHING`,
      [clusterId, keyVersion, sealedValueIds, wrapped],
    );
  }

  /**
   * Replaces the cluster's snapshot with `rows` at generation `g` (unchanged rows keep their
   * generation) and marks it built: one statement, since this runs once per cluster per change.
   * The DELETE and the upsert touch disjoint rows, so they can share a statement.
   */
  async saveSnapshot(em: EntityManager, clusterId: string, g: bigint, keyVersion: number, rows: DesiredRow[]): Promise<void> {
    await em.query(
      `WITH gone AS (
         DELETE FROM cluster_secrets WHERE cluster_id = $1 AND NOT (secret_id = ANY($4::uuid[]))
       ), upserted AS (
         INSERT INTO cluster_secrets (cluster_id, secret_id, app_id, secret_version, sealed_value_id, generation, cluster_key_version)
         SELECT $1, s, a, v, sv, $2, $3 FROM unnest($4::uuid[], $5::uuid[], $6::int[], $7::uuid[]) AS x(s, a, v, sv)
         ON CONFLICT (cluster_id, secret_id) DO UPDATE
           SET secret_version = EXCLUDED.secret_version, sealed_value_id = EXCLUDED.sealed_value_id, app_id = EXCLUDED.app_id,
               cluster_key_version = EXCLUDED.cluster_key_version, generation = EXCLUDED.generation
           WHERE cluster_secrets.sealed_value_id <> EXCLUDED.sealed_value_id
              OR cluster_secrets.cluster_key_version <> EXCLUDED.cluster_key_version
       )
       UPDATE clusters SET built_generation = $2, delivery_error = NULL WHERE id = $1`,
      [
        clusterId,
        g.toString(),
        keyVersion,
        rows.map((r) => r.secretId),
        rows.map((r) => r.appId),
        rows.map((r) => r.version),
        rows.map((r) => r.sealedValueId),
      ],
    );
  }

  async setDeliveryError(clusterId: string, error: string): Promise<void> {
    await this.ds.query('UPDATE clusters SET delivery_error = $2 WHERE id = $1', [clusterId, error.slice(0, 500)]);
  }

  /** Per cluster, where `appId` stands: its entry, what the agent applied, and failures it reported. */
  appStatus(appId: string): Promise<AppClusterStatusRow[]> {
    return this.ds.query(
      `SELECT c.id AS "clusterId", c.name AS cluster, c.state AS "clusterState", ca.published, ca.generation::text AS generation,
              c.applied_generation::text AS "appliedGeneration", c.delivery_error AS "deliveryError", ca.changed_at AS "changedAt",
              count(ss.*) FILTER (WHERE ss.state IN ('failed', 'conflict'))::int AS "failedSecrets",
              min(ss.reason || ': ' || ss.namespace || '/' || ss.name) FILTER (WHERE ss.state IN ('failed', 'conflict')) AS failure
         FROM cluster_apps ca
         JOIN clusters c ON c.id = ca.cluster_id
         LEFT JOIN secret_statuses ss
           ON ss.cluster_id = ca.cluster_id AND ss.generation >= ca.generation
          AND ss.secret_id IN (SELECT id FROM secrets WHERE app_id = ca.app_id)
        WHERE ca.app_id = $1
        GROUP BY c.id, c.name, c.state, ca.published, ca.generation, c.applied_generation, c.delivery_error, ca.changed_at
        ORDER BY c.name`,
      [appId],
    );
  }
}
