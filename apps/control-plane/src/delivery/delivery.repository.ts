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

/** A cluster a batch build works on: its desired generation and active delivery key as first read. */
export interface BuildTarget {
  clusterId: string;
  desired: bigint;
  keyVersion: number;
  rootKeyVersion: number;
  /** The delivery key, wrapped under root key `rootKeyVersion`. */
  wrappedKey: Buffer;
}

/** One secret one cluster of a batch should hold; `wrappedDek` is set only when the cluster has no wrapped copy yet. */
export interface DesiredClusterRow {
  clusterId: string;
  secretId: string;
  appId: string;
  version: number;
  sealedValueId: string;
  rootKeyVersion: number;
  /** The root-wrapped data key, present only when it still has to be wrapped for the cluster. */
  wrappedDek: Buffer | null;
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

  /**
   * What an agent writes for the app's secrets besides their values — app name, namespace,
   * delivery mode; each secret's name, type and target namespace — as comparable strings.
   */
  async deliveryShape(em: EntityManager, appId: string): Promise<{ app: string; secrets: Map<string, string> } | undefined> {
    const rows = await em.query<Array<{ app: string; secrets: Record<string, string> }>>(
      `SELECT json_build_array(a.name, a.namespace, a.delivery_mode, a.project_id)::text AS app,
              coalesce(json_object_agg(s.id, json_build_array(s.name, s.type, s.namespace)::text) FILTER (WHERE s.id IS NOT NULL), '{}')
                AS secrets
         FROM apps a LEFT JOIN secrets s ON s.app_id = a.id WHERE a.id = $1 GROUP BY a.id`,
      [appId],
    );
    return rows[0] && { app: rows[0].app, secrets: new Map(Object.entries(rows[0].secrets)) };
  }

  /**
   * Marks the snapshot rows of the app (or only of `secretIds`) as changed although their sealed
   * value is the same (a move, another delivery mode, a rename): the next build gives them its
   * generation, so a delta sends them in full. Generation 0 is never a built generation; until
   * that build a delta would list such a row by reference at 0, which no agent holds, and the
   * agent asks for a complete state. The rows stay, so a complete state read meanwhile still
   * carries every secret (deleting them would make agents delete the Secrets until the build).
   */
  async markSnapshotRowsChanged(em: EntityManager, appId: string, secretIds?: string[]): Promise<void> {
    if (secretIds) {
      if (secretIds.length === 0) return;
      await em.query('UPDATE cluster_secrets SET generation = 0 WHERE app_id = $1 AND secret_id = ANY($2::uuid[]) AND generation <> 0', [
        appId,
        secretIds,
      ]);
    } else {
      await em.query('UPDATE cluster_secrets SET generation = 0 WHERE app_id = $1 AND generation <> 0', [appId]);
    }
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
   * work list), in id order so that every replica cuts the same batches. Clusters not enrolled
   * yet have nothing to build for: enrollment triggers it.
   */
  behind(limit: number): Promise<Array<{ id: string; g: string }>> {
    return this.ds.query(
      `SELECT id, desired_generation AS g FROM clusters
        WHERE built_generation < desired_generation AND state = 'enrolled' ORDER BY id LIMIT $1`,
      [limit],
    );
  }

  /**
   * Of `clusterIds`, those whose snapshot is behind and that hold an active delivery key, with
   * that key: the first statement of a batch build, and the only one of a duplicate build.
   */
  async behindWithKeys(em: EntityManager, clusterIds: string[]): Promise<BuildTarget[]> {
    const rows = await em.query<Array<{ id: string; d: string; v: number; r: number; w: Buffer }>>(
      `SELECT c.id, c.desired_generation::text AS d, k.version AS v, k.root_key_version AS r, k.wrapped_key AS w
         FROM clusters c JOIN cluster_keys k ON k.cluster_id = c.id AND k.state = 'active'
        WHERE c.id = ANY($1::uuid[]) AND c.built_generation < c.desired_generation
        ORDER BY c.id`,
      [clusterIds],
    );
    return rows.map((r) => ({ clusterId: r.id, desired: BigInt(r.d), keyVersion: r.v, rootKeyVersion: r.r, wrappedKey: r.w }));
  }

  /**
   * What each cluster should hold now — the current version of every secret of every app
   * published to it — and, per row, whether a data key wrapped under the cluster's delivery key
   * at `keyVersion` exists already (if not, the row carries the root-wrapped data key to wrap).
   * One set-based statement for the whole batch.
   */
  desiredFor(em: EntityManager, targets: Array<Pick<BuildTarget, 'clusterId' | 'keyVersion'>>): Promise<DesiredClusterRow[]> {
    if (targets.length === 0) return Promise.resolve([]);
    return em.query(
      `SELECT x.c AS "clusterId", s.id AS "secretId", s.app_id AS "appId", v.version, v.sealed_value_id AS "sealedValueId",
              sv.root_key_version AS "rootKeyVersion",
              CASE WHEN wk.cluster_id IS NULL THEN sv.wrapped_dek END AS "wrappedDek"
         FROM unnest($1::uuid[], $2::int[]) AS x(c, k)
         JOIN cluster_apps ca ON ca.cluster_id = x.c AND ca.published
         JOIN secrets s ON s.app_id = ca.app_id
         JOIN secret_versions v ON v.secret_id = s.id AND v.version = s.current_version
         JOIN sealed_values sv ON sv.id = v.sealed_value_id
         LEFT JOIN cluster_wrapped_keys wk
           ON wk.cluster_id = x.c AND wk.sealed_value_id = v.sealed_value_id AND wk.cluster_key_version = x.k
        ORDER BY x.c, s.id`,
      [targets.map((t) => t.clusterId), targets.map((t) => t.keyVersion)],
    );
  }

  /** Saves data keys wrapped for many clusters in one statement (a cache: a concurrent copy wins). */
  async saveWrappedMany(
    em: EntityManager,
    rows: Array<{ clusterId: string; keyVersion: number; sealedValueId: string; wrapped: Buffer }>,
  ): Promise<void> {
    if (rows.length === 0) return;
    await em.query(
      `INSERT INTO cluster_wrapped_keys (cluster_id, sealed_value_id, cluster_key_version, wrapped_dek)
       SELECT c, s, k, w FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::bytea[]) AS v(c, s, k, w) ON CONFLICT DO NOTHING`,
      [rows.map((r) => r.clusterId), rows.map((r) => r.sealedValueId), rows.map((r) => r.keyVersion), rows.map((r) => r.wrapped)],
    );
  }

  /**
   * Locks the rows of `clusterIds` that no one else holds, in id order (two builders of
   * overlapping batches never wait on each other, so they cannot deadlock), with their
   * generations and active key version. Clusters locked elsewhere are simply not returned.
   */
  async lockBatch(
    em: EntityManager,
    clusterIds: string[],
  ): Promise<Array<{ clusterId: string; desired: bigint; built: bigint; keyVersion: number | null }>> {
    const rows = await em.query<Array<{ id: string; d: string; b: string; k: number | null }>>(
      `SELECT c.id, c.desired_generation::text AS d, c.built_generation::text AS b,
              (SELECT version FROM cluster_keys k WHERE k.cluster_id = c.id AND k.state = 'active') AS k
         FROM clusters c WHERE c.id = ANY($1::uuid[]) ORDER BY c.id FOR UPDATE OF c SKIP LOCKED`,
      [clusterIds],
    );
    return rows.map((r) => ({ clusterId: r.id, desired: BigInt(r.d), built: BigInt(r.b), keyVersion: r.k }));
  }

  /**
   * Replaces the snapshots of many clusters and marks each built at its generation, in one
   * statement (the rows of `saves` are locked by the caller, so nothing else writes their rows
   * meanwhile). A row keeps its generation unless its sealed value, version or key version
   * changed, or it was marked changed (generation 0, see markSnapshotRowsChanged): agents
   * receive in full exactly the rows whose generation is newer than what they hold. The DELETE and the upsert touch disjoint rows, so they share a statement.
   */
  async saveSnapshots(
    em: EntityManager,
    saves: Array<{ clusterId: string; generation: bigint; keyVersion: number }>,
    rows: DesiredClusterRow[],
  ): Promise<void> {
    if (saves.length === 0) return;
    await em.query(
      `WITH k AS (
         SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::int[]) AS k(c, g, kv)
       ), x AS (
         SELECT * FROM unnest($4::uuid[], $5::uuid[], $6::uuid[], $7::int[], $8::uuid[]) AS x(c, s, a, v, sv)
       ), gone AS (
         DELETE FROM cluster_secrets cs USING k
          WHERE cs.cluster_id = k.c AND NOT EXISTS (SELECT 1 FROM x WHERE x.c = cs.cluster_id AND x.s = cs.secret_id)
       ), changed AS (
         -- Only rows that are new or differ: an upsert of an unchanged row would still lock and dirty it.
         SELECT x.c, x.s, x.a, x.v, x.sv, k.g, k.kv FROM x JOIN k ON k.c = x.c
           LEFT JOIN cluster_secrets cs ON cs.cluster_id = x.c AND cs.secret_id = x.s
          WHERE cs.cluster_id IS NULL OR cs.sealed_value_id <> x.sv OR cs.cluster_key_version <> k.kv OR cs.generation = 0
             OR cs.app_id <> x.a OR cs.secret_version <> x.v
       ), upserted AS (
         INSERT INTO cluster_secrets (cluster_id, secret_id, app_id, secret_version, sealed_value_id, generation, cluster_key_version)
         SELECT c, s, a, v, sv, g, kv FROM changed
         ON CONFLICT (cluster_id, secret_id) DO UPDATE
           SET secret_version = EXCLUDED.secret_version, sealed_value_id = EXCLUDED.sealed_value_id, app_id = EXCLUDED.app_id,
               cluster_key_version = EXCLUDED.cluster_key_version, generation = EXCLUDED.generation
       )
       UPDATE clusters c SET built_generation = k.g, delivery_error = NULL FROM k WHERE c.id = k.c`,
      [
        saves.map((s) => s.clusterId),
        saves.map((s) => s.generation.toString()),
        saves.map((s) => s.keyVersion),
        rows.map((r) => r.clusterId),
        rows.map((r) => r.secretId),
        rows.map((r) => r.appId),
        rows.map((r) => r.version),
        rows.map((r) => r.sealedValueId),
      ],
    );
  }

  /** Records a failed build on each cluster (shown as `DeliveryFailed`), in one statement. */
  async setDeliveryError(clusterIds: string[], error: string): Promise<void> {
    if (clusterIds.length === 0) return;
    await this.ds.query('UPDATE clusters SET delivery_error = $2 WHERE id = ANY($1::uuid[])', [clusterIds, error.slice(0, 500)]);
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
