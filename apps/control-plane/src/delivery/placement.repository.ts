import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { inTransaction, managerOf, type Tx } from '../database/transaction.js';
import type { LabelSelector } from '../common/label-selector.js';

export interface Placement {
  appId: string;
  clusters: string[];
  selectors: LabelSelector[];
  excluded: string[];
  updatedAt: Date;
}

/** Serialises every change of who-gets-what (publish, unpublish, relabel, project selector). */
const MEMBERSHIP_LOCK = 0x5161_0005;

/**
 * Who gets what: placements (where an app is published), membership (cluster_apps, the apps each
 * cluster holds at which generation). Every write runs under the membership lock, in the caller's
 * transaction; the clusters' desired generations it moves belong to clusters/ (ClustersService).
 */
@Injectable()
export class PlacementRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  private em(tx: Tx | undefined) {
    return managerOf(this.ds, tx);
  }

  /** A transaction holding the membership lock. */
  membershipTransaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return inTransaction(this.ds, async (tx) => {
      await this.lockMembership(tx);
      return fn(tx);
    });
  }

  /** Takes the membership lock inside a caller's transaction (held until it ends). */
  async lockMembership(tx: Tx): Promise<void> {
    await this.em(tx).query('SELECT pg_advisory_xact_lock($1)', [MEMBERSHIP_LOCK]);
  }

  async placement(tx: Tx | undefined, appId: string): Promise<Placement | undefined> {
    const rows = await this.em(tx).query<Placement[]>(
      `SELECT app_id AS "appId", clusters, selectors, excluded, updated_at AS "updatedAt" FROM placements WHERE app_id = $1`,
      [appId],
    );
    return rows[0];
  }

  async placementsOfProject(tx: Tx, projectId: string | undefined): Promise<Array<Placement & { projectId: string }>> {
    return this.em(tx).query(
      `SELECT p.app_id AS "appId", p.clusters, p.selectors, p.excluded, p.updated_at AS "updatedAt", a.project_id AS "projectId"
         FROM placements p JOIN apps a ON a.id = p.app_id ${projectId ? 'WHERE a.project_id = $1' : ''}`,
      projectId ? [projectId] : [],
    );
  }

  async savePlacement(tx: Tx, p: Omit<Placement, 'updatedAt'>): Promise<void> {
    await this.em(tx).query(
      `INSERT INTO placements (app_id, clusters, selectors, excluded) VALUES ($1, $2, $3, $4)
       ON CONFLICT (app_id) DO UPDATE SET clusters = $2, selectors = $3, excluded = $4, updated_at = now(),
         version = placements.version + 1`,
      [p.appId, p.clusters, JSON.stringify(p.selectors), p.excluded],
    );
  }

  async publishedClusters(tx: Tx, appId: string): Promise<Set<string>> {
    const rows = await this.em(tx).query<Array<{ id: string }>>(
      'SELECT cluster_id AS id FROM cluster_apps WHERE app_id = $1 AND published',
      [appId],
    );
    return new Set(rows.map((r) => r.id));
  }

  async publishedApps(tx: Tx, clusterId: string): Promise<Set<string>> {
    const rows = await this.em(tx).query<Array<{ id: string }>>(
      'SELECT app_id AS id FROM cluster_apps WHERE cluster_id = $1 AND published',
      [clusterId],
    );
    return new Set(rows.map((r) => r.id));
  }

  /**
   * Records that `appId` is (or is no longer) published on each cluster of `generations`, at the
   * cluster's new desired generation (ClustersService.bumpDesiredGeneration), in one statement.
   */
  async recordMembership(tx: Tx, appId: string, generations: Map<string, string>, published: boolean): Promise<void> {
    if (generations.size === 0) return;
    await this.em(tx).query(
      `INSERT INTO cluster_apps (cluster_id, app_id, published, generation)
       SELECT c, $2, $3, g FROM unnest($1::uuid[], $4::bigint[]) AS v(c, g)
       ON CONFLICT (cluster_id, app_id) DO UPDATE SET published = $3, generation = EXCLUDED.generation, changed_at = now()`,
      [[...generations.keys()], appId, published, [...generations.values()]],
    );
  }

  /**
   * The app entries of these (app, cluster) pairs record the clusters' new generations, where the
   * app is still published: its status then waits for the agent to apply that generation.
   */
  async recordGenerations(tx: Tx, rows: Array<{ appId: string; clusterId: string; generation: string }>): Promise<void> {
    if (rows.length === 0) return;
    await this.em(tx).query(
      `UPDATE cluster_apps ca SET generation = x.g, changed_at = now()
         FROM unnest($1::uuid[], $2::uuid[], $3::bigint[]) AS x(a, c, g)
        WHERE ca.app_id = x.a AND ca.cluster_id = x.c AND ca.published AND ca.generation < x.g`,
      [rows.map((r) => r.appId), rows.map((r) => r.clusterId), rows.map((r) => r.generation)],
    );
  }

  /**
   * What an agent writes for the app's secrets besides their values — app name, namespace,
   * delivery mode, consumers; each secret's name, type and target namespace — as comparable strings.
   */
  async deliveryShape(tx: Tx, appId: string): Promise<{ app: string; secrets: Map<string, string> } | undefined> {
    const rows = await this.em(tx).query<Array<{ app: string; secrets: Record<string, string> }>>(
      `SELECT json_build_array(a.name, a.namespace, a.delivery_mode, a.project_id, a.consumers)::text AS app,
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
  async markSnapshotRowsChanged(tx: Tx, appId: string, secretIds?: string[]): Promise<void> {
    if (secretIds) {
      if (secretIds.length === 0) return;
      await this.em(tx).query(
        'UPDATE cluster_secrets SET generation = 0 WHERE app_id = $1 AND secret_id = ANY($2::uuid[]) AND generation <> 0',
        [appId, secretIds],
      );
    } else {
      await this.em(tx).query('UPDATE cluster_secrets SET generation = 0 WHERE app_id = $1 AND generation <> 0', [appId]);
    }
  }
}
