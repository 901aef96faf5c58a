import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { packBytes } from '../database/packed-bytes.js';
import { managerOf, type Tx } from '../database/transaction.js';

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

/**
 * The write side of snapshots: what the delivery job reads and writes to bring clusters' built
 * snapshots (cluster_secrets, built_generation) up to their desired generation, a batch of
 * clusters per statement. The read side, for the Sync streams, is SnapshotRepository.
 */
@Injectable()
export class SnapshotBuildRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  private em(tx: Tx | undefined) {
    return managerOf(this.ds, tx);
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
  async behindWithKeys(tx: Tx | undefined, clusterIds: string[]): Promise<BuildTarget[]> {
    const rows = await this.em(tx).query<Array<{ id: string; d: string; v: number; r: number; w: Buffer }>>(
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
   * published to it, and for a dynamic secret the cluster's own active lease — and, per row, whether a data key wrapped under the cluster's delivery key
   * at `keyVersion` exists already (if not, the row carries the root-wrapped data key to wrap).
   * One set-based statement for the whole batch.
   */
  desiredFor(tx: Tx | undefined, targets: Array<Pick<BuildTarget, 'clusterId' | 'keyVersion'>>): Promise<DesiredClusterRow[]> {
    if (targets.length === 0) return Promise.resolve([]);
    return this.em(tx).query(
      `SELECT x.c AS "clusterId", s.id AS "secretId", s.app_id AS "appId", v.version, v.sealed_value_id AS "sealedValueId",
              sv.root_key_version AS "rootKeyVersion",
              CASE WHEN wk.cluster_id IS NULL THEN sv.wrapped_dek END AS "wrappedDek"
         FROM unnest($1::uuid[], $2::int[]) AS x(c, k)
         JOIN cluster_apps ca ON ca.cluster_id = x.c AND ca.published
         JOIN secrets s ON s.app_id = ca.app_id
         -- a typed or generated secret: its current version; a dynamic one: this cluster's active lease,
         -- whose serial is the cluster's version of it (a cluster without one yet holds nothing of it)
         JOIN LATERAL (
           SELECT v.version, v.sealed_value_id FROM secret_versions v
            WHERE s.dynamic IS NULL AND v.secret_id = s.id AND v.version = s.current_version
           UNION ALL
           SELECT l.serial, l.sealed_value_id FROM credential_leases l
            WHERE s.dynamic IS NOT NULL AND l.secret_id = s.id AND l.cluster_id = x.c AND l.state = 'active'
         ) v ON true
         JOIN sealed_values sv ON sv.id = v.sealed_value_id
         LEFT JOIN cluster_wrapped_keys wk
           ON wk.cluster_id = x.c AND wk.sealed_value_id = v.sealed_value_id AND wk.cluster_key_version = x.k
        ORDER BY x.c, s.id`,
      [targets.map((t) => t.clusterId), targets.map((t) => t.keyVersion)],
    );
  }

  /**
   * Saves data keys wrapped for many clusters in one statement (a cache: a concurrent copy wins).
   * Outside the clusters' locks, so a copy whose cluster or ciphertext was deleted meanwhile is
   * left out (the table has no foreign keys: migration 1763800000012).
   */
  async saveWrappedMany(
    tx: Tx | undefined,
    rows: Array<{ clusterId: string; keyVersion: number; sealedValueId: string; wrapped: Buffer }>,
  ): Promise<void> {
    if (rows.length === 0) return;
    const wrapped = packBytes(rows.map((r) => r.wrapped));
    await this.em(tx).query(
      `INSERT INTO cluster_wrapped_keys (cluster_id, sealed_value_id, cluster_key_version, wrapped_dek)
       SELECT c, s, k, substring($4::bytea FROM o FOR l)
         FROM unnest($1::uuid[], $2::uuid[], $3::int[], $5::int[], $6::int[]) AS v(c, s, k, o, l)
        WHERE EXISTS (SELECT 1 FROM clusters WHERE id = v.c) AND EXISTS (SELECT 1 FROM sealed_values WHERE id = v.s)
       ON CONFLICT DO NOTHING`,
      [
        rows.map((r) => r.clusterId),
        rows.map((r) => r.sealedValueId),
        rows.map((r) => r.keyVersion),
        wrapped.blob,
        wrapped.offsets,
        wrapped.lengths,
      ],
    );
  }

  /**
   * Locks the rows of `clusterIds` that no one else holds, in id order (two builders of
   * overlapping batches never wait on each other, so they cannot deadlock), with their
   * generations and active key version. Clusters locked elsewhere are simply not returned.
   */
  async lockBatch(
    tx: Tx,
    clusterIds: string[],
  ): Promise<Array<{ clusterId: string; desired: bigint; built: bigint; keyVersion: number | null }>> {
    const rows = await this.em(tx).query<Array<{ id: string; d: string; b: string; k: number | null }>>(
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
    tx: Tx,
    saves: Array<{ clusterId: string; generation: bigint; keyVersion: number }>,
    rows: DesiredClusterRow[],
  ): Promise<void> {
    if (saves.length === 0) return;
    await this.em(tx).query(
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
}
