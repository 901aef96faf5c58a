import { Inject, Injectable } from '@nestjs/common';
import { CONSUMER_OVERHEAD_BYTES } from '@sigil/agent-protocol';
import { DataSource } from 'typeorm';
import type { AppConsumer, DeliveryMode } from '../apps/app.entity.js';
import { unpackBytes } from '../database/packed-bytes.js';

/** What an agent needs to open one secret of a built snapshot (a row sent in full). */
export interface SnapshotBody {
  secret: string;
  type: string;
  projectId: string;
  app: string;
  namespace: string;
  deliveryMode: DeliveryMode;
  /** Inject mode: who may receive it (empty in the other modes, where the app's list is unused). */
  consumers: AppConsumer[];
  clusterKeyVersion: number;
  wrappedDek: Buffer;
  iv: Buffer;
  ciphertext: Buffer;
}

/** One secret of a cluster's built snapshot: always its reference, its body only when it is sent in full. */
export interface SnapshotRow {
  secretId: string;
  version: number;
  /** The generation at which the row last changed (decimal). */
  generation: string;
  body: SnapshotBody | undefined;
}

/** What one batched read found for one cluster. */
export type ClusterState =
  /** The whole state, in one consistent view: every row, bodies for those changed since the base. */
  | { clusterId: string; kind: 'full'; generation: bigint; keyEnvelopes: Buffer[]; rows: SnapshotRow[] }
  /** Its bodies exceed one part's budget: read it page by page (snapshotPage). */
  | { clusterId: string; kind: 'paged'; generation: bigint }
  /** The read's byte budget was used up by clusters before it: ask again in the next read. */
  | { clusterId: string; kind: 'deferred'; generation: bigint }
  /** The built generation is the one the caller said the agent holds: nothing read beyond it. */
  | { clusterId: string; kind: 'current'; generation: bigint };

/** One agent report for the group commit: what it applied (or null: a hello) and its statuses. */
export interface AgentReport {
  clusterId: string;
  /** The generation reported at; null when only the agent's version / liveness is recorded. */
  generation: bigint | null;
  /**
   * Whether `generation` is an acknowledgement of a state the control plane sent on the stream
   * (only that moves applied_generation; statuses at the acknowledged generation do not).
   */
  acked?: boolean;
  agentVersion: string | null;
  statuses: ReportedStatus[];
}

export interface ReportedStatus {
  namespace: string;
  name: string;
  secretId: string | null;
  version: number;
  generation: string;
  state: string;
  reason: string;
  message: string;
}

const NO_ID = '00000000-0000-0000-0000-000000000000';

/** An app's consumers as a row carries them: only inject apps send theirs. */
const CONSUMERS = (app: string) => `CASE WHEN ${app}.delivery_mode = 'inject' THEN ${app}.consumers ELSE '[]'::jsonb END`;
/** How many consumers a row of the app sends (sizes carry CONSUMER_OVERHEAD_BYTES per consumer). */
const CONSUMER_COUNT = (app: string) => `jsonb_array_length(${CONSUMERS(app)})`;

/**
 * The read side of delivery, for the Sync streams: built snapshots read for many clusters in
 * one statement, large ones page by page, and agents' reports written for many clusters in one
 * statement. PostgreSQL's cost is per statement, not per row, so every method here takes lists.
 */
@Injectable()
export class SnapshotRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  /**
   * The built state of each requested cluster, in ONE statement (so each is one consistent view
   * of its generation and rows). Per cluster: the built generation, the delivery-key envelopes,
   * every row's reference, and bodies only for rows changed since `base` (0: all of them) —
   * or, when the built generation is `unless` (what the agent already holds), nothing more
   * (`current`: a reconnect storm of agents that are up to date reads no rows). With `hello`,
   * only if the centre also recorded that generation as applied.
   * Memory is bounded before any body is read — sizes come from the TOAST header: a cluster
   * whose bodies exceed `clusterBudget` comes back `paged`; once the bodies of the clusters
   * before it (in request order) exceed `readBudget`, the rest come back `deferred`. The first
   * cluster that fits is always served, so every read makes progress.
   */
  async states(
    requests: Array<{ clusterId: string; base: bigint; unless?: bigint; hello?: boolean }>,
    clusterBudget: number,
    readBudget: number,
    rowOverhead: number,
  ): Promise<ClusterState[]> {
    if (requests.length === 0) return [];
    type Row = {
      clusterId: string;
      verdict: 'full' | 'paged' | 'deferred' | 'current';
      built: string;
      keyEnvelopeBytes: Buffer | null;
      keyEnvelopeLengths: number[] | null;
      secretId: string | null;
      version: number | null;
      generation: string | null;
      full: boolean | null;
    } & Partial<SnapshotBody>;
    const rows = await this.ds.query<Row[]>(
      `WITH req AS (
         SELECT r.cluster_id, r.base, r.ord, c.built_generation AS built,
                -- after a Hello, "current" also needs the claim on record: an ack the centre lost
                -- (a killed replica's unwritten batch) is made good by sending the state again
                CASE WHEN r.hello AND c.applied_generation < r.unless THEN -1 ELSE r.unless END AS unless
           FROM unnest($1::uuid[], $2::bigint[], $6::bigint[], $7::bool[]) WITH ORDINALITY AS r(cluster_id, base, unless, hello, ord)
           JOIN clusters c ON c.id = r.cluster_id
       ), sized AS (
         SELECT r.*, CASE WHEN r.built = r.unless THEN 0 ELSE
                  coalesce((SELECT sum(octet_length(sv.ciphertext) + $5::int + $8::int * ${CONSUMER_COUNT('ap')})
                              FROM cluster_secrets cs JOIN sealed_values sv ON sv.id = cs.sealed_value_id JOIN apps ap ON ap.id = cs.app_id
                             WHERE cs.cluster_id = r.cluster_id AND (cs.generation > r.base OR cs.generation = 0)), 0) END AS bytes
           FROM req r
       ), admitted AS (
         SELECT s.*, s.bytes <= $3::bigint AS fits,
                sum(CASE WHEN s.bytes <= $3::bigint THEN s.bytes ELSE 0 END) OVER (ORDER BY s.ord) AS running
           FROM sized s
       ), verdicts AS (
         SELECT a.cluster_id, a.base, a.ord, a.built,
                CASE WHEN a.built = a.unless THEN 'current' WHEN NOT a.fits THEN 'paged'
                     WHEN a.running <= $4::bigint OR a.running = a.bytes THEN 'full' ELSE 'deferred' END AS verdict
           FROM admitted a
       )
       SELECT v.cluster_id::text AS "clusterId", v.verdict, v.built::text AS built,
              ke.bytes AS "keyEnvelopeBytes", ke.lengths AS "keyEnvelopeLengths",
              x."secretId", x.version, x.generation, x.full,
              b.secret, b.type, b."projectId", b.app, b.namespace, b."deliveryMode", b.consumers, b."clusterKeyVersion", b."wrappedDek", b.iv, b.ciphertext
         FROM verdicts v
         LEFT JOIN LATERAL (
           SELECT cs.secret_id::text AS "secretId", cs.secret_version AS version, cs.generation::text AS generation,
                  (cs.generation > v.base OR cs.generation = 0) AS full, cs.secret_id, cs.app_id, cs.sealed_value_id, cs.cluster_key_version,
                  row_number() OVER (ORDER BY cs.secret_id) AS n
             FROM cluster_secrets cs
            WHERE cs.cluster_id = v.cluster_id AND v.verdict = 'full'
         ) x ON true
         LEFT JOIN LATERAL (
           SELECT s.name AS secret, s.type, s.project_id AS "projectId", ap.name AS app, ap.namespace, ap.delivery_mode AS "deliveryMode",
                  ${CONSUMERS('ap')} AS consumers, x.cluster_key_version AS "clusterKeyVersion", wk.wrapped_dek AS "wrappedDek", sv.iv, sv.ciphertext
             FROM secrets s
             JOIN apps ap ON ap.id = x.app_id
             JOIN sealed_values sv ON sv.id = x.sealed_value_id
             JOIN cluster_wrapped_keys wk
               ON wk.cluster_id = v.cluster_id AND wk.sealed_value_id = x.sealed_value_id AND wk.cluster_key_version = x.cluster_key_version
            WHERE s.id = x.secret_id AND x.full
         ) b ON true
         -- the delivery-key envelopes, on a cluster's first row: one bytea and their lengths, as a
         -- bytea[] result is parsed character by character by the driver (packed-bytes.ts)
         LEFT JOIN LATERAL (
           SELECT string_agg(k.agent_envelope, ''::bytea ORDER BY k.version DESC) AS bytes,
                  array_agg(octet_length(k.agent_envelope) ORDER BY k.version DESC) AS lengths
             FROM cluster_keys k
            WHERE v.verdict = 'full' AND coalesce(x.n, 1) = 1 AND k.cluster_id = v.cluster_id
              AND (k.state = 'active' OR k.version IN (SELECT DISTINCT cluster_key_version FROM cluster_secrets WHERE cluster_id = v.cluster_id))
         ) ke ON true
        ORDER BY v.ord, x.n`,
      [
        requests.map((r) => r.clusterId),
        requests.map((r) => r.base.toString()),
        clusterBudget,
        readBudget,
        rowOverhead,
        requests.map((r) => (r.unless ?? -1n).toString()),
        requests.map((r) => r.hello === true),
        CONSUMER_OVERHEAD_BYTES,
      ],
    );
    const out = new Map<string, ClusterState>();
    for (const r of rows) {
      let state = out.get(r.clusterId);
      if (!state) {
        const generation = BigInt(r.built);
        const created: ClusterState =
          r.verdict === 'full'
            ? {
                clusterId: r.clusterId,
                kind: 'full',
                generation,
                keyEnvelopes: unpackBytes(r.keyEnvelopeBytes, r.keyEnvelopeLengths),
                rows: [],
              }
            : { clusterId: r.clusterId, kind: r.verdict, generation };
        out.set(r.clusterId, (state = created));
      }
      if (state.kind !== 'full' || r.secretId === null) continue;
      // A row to send in full whose body did not join (no wrapped key) is left out, as a paged read leaves it out.
      if (r.full && r.secret == null) continue;
      state.rows.push({
        secretId: r.secretId,
        version: r.version!,
        generation: r.generation!,
        body: r.full ? bodyOf(r as SnapshotBody) : undefined,
      });
    }
    return [...out.values()];
  }

  /**
   * One page of the built snapshot (for a cluster too large for a batched read), with its
   * generation and the delivery-key envelopes it needs, in one statement. Keyset-paged by
   * secret id (the primary key's order, an index range scan): rows after `after` while their
   * estimated wire size — ciphertext plus `rowOverhead` for rows changed since `base`,
   * `refBytes` for the others, sent by reference — adds up to at most `budget`, and always at
   * least one. Sizes come from the TOAST header (octet_length), so rows beyond the page are
   * never read in full. `next`: where the next page starts, if rows remain. A caller that sees
   * the generation change between pages starts again: the pages of one listing are one generation.
   */
  async snapshotPage(
    clusterId: string,
    after: string | undefined,
    base: bigint,
    budget: number,
    rowOverhead: number,
    refBytes: number,
  ): Promise<{ generation: bigint; rows: SnapshotRow[]; keyEnvelopes: Buffer[]; next: string | undefined }> {
    const rows = await this.ds.query<
      Array<
        Partial<SnapshotBody> & {
          builtGeneration: string;
          keyEnvelopes: Buffer[];
          more: boolean;
          lastId: string | null;
          secretId: string | null;
          version: number;
          generation: string;
          full: boolean;
        }
      >
    >(
      `WITH candidates AS (
         SELECT cs.secret_id, cs.app_id, cs.sealed_value_id, cs.secret_version, cs.generation, cs.cluster_key_version,
                sum(CASE WHEN cs.generation > $5::bigint OR cs.generation = 0
                         THEN octet_length(sv.ciphertext) + $4::int + $7::int * ${CONSUMER_COUNT('a')} ELSE $6::int END) OVER w AS running,
                row_number() OVER w AS n
           FROM cluster_secrets cs
           JOIN sealed_values sv ON sv.id = cs.sealed_value_id
           JOIN apps a ON a.id = cs.app_id
          WHERE cs.cluster_id = $1 AND cs.secret_id > $2::uuid
         WINDOW w AS (ORDER BY cs.secret_id)
          ORDER BY cs.secret_id
          -- one candidate beyond what the budget can hold tells whether rows remain (the first row always goes)
          LIMIT greatest($3::int / least($4::int, $6::int), 1) + 1
       ), page AS (
         SELECT * FROM candidates WHERE n = 1 OR running <= $3::int
       )
       SELECT c.built_generation::text AS "builtGeneration",
              ARRAY(SELECT agent_envelope FROM cluster_keys
                     WHERE cluster_id = $1
                       AND (state = 'active' OR version IN (SELECT DISTINCT cluster_key_version FROM cluster_secrets WHERE cluster_id = $1))
                     ORDER BY version DESC) AS "keyEnvelopes",
              (SELECT count(*) FROM candidates) > (SELECT count(*) FROM page) AS more,
              (SELECT secret_id::text FROM page ORDER BY n DESC LIMIT 1) AS "lastId",
              x.*
         FROM clusters c
         LEFT JOIN LATERAL (
           SELECT p.secret_id::text AS "secretId", p.secret_version AS version, p.generation::text AS generation,
                  (p.generation > $5::bigint OR p.generation = 0) AS full,
                  s.name AS secret, s.type, s.project_id AS "projectId", a.name AS app, a.namespace, a.delivery_mode AS "deliveryMode",
                  ${CONSUMERS('a')} AS consumers, p.cluster_key_version AS "clusterKeyVersion", wk.wrapped_dek AS "wrappedDek",
                  CASE WHEN p.generation > $5::bigint OR p.generation = 0 THEN sv.iv END AS iv,
                  CASE WHEN p.generation > $5::bigint OR p.generation = 0 THEN sv.ciphertext END AS ciphertext
             FROM page p
             JOIN secrets s ON s.id = p.secret_id
             JOIN apps a ON a.id = p.app_id
             JOIN sealed_values sv ON sv.id = p.sealed_value_id
             JOIN cluster_wrapped_keys wk
               ON wk.cluster_id = c.id AND wk.sealed_value_id = p.sealed_value_id AND wk.cluster_key_version = p.cluster_key_version
         ) x ON true
        WHERE c.id = $1
        ORDER BY x."secretId"`,
      [clusterId, after ?? NO_ID, budget, rowOverhead, base.toString(), refBytes, CONSUMER_OVERHEAD_BYTES],
    );
    const first = rows[0];
    return {
      generation: BigInt(first?.builtGeneration ?? 0),
      rows: rows
        .filter((r) => r.secretId)
        .map((r) => ({
          secretId: r.secretId!,
          version: r.version,
          generation: r.generation,
          body: r.full ? bodyOf(r as SnapshotBody) : undefined,
        })),
      keyEnvelopes: first?.keyEnvelopes ?? [],
      // The page's last candidate, even if a join dropped it: the next page starts after it.
      next: first?.more && first.lastId ? first.lastId : undefined,
    };
  }

  /**
   * Agents' reports, many clusters in ONE statement (group commit): each cluster's applied
   * generation (only if it was built: an agent is never recorded beyond what it was given),
   * agent version and last-seen time, and the statuses of the clusters whose generation was
   * accepted (failures and conflicts kept, applied or deleted targets cleared). Callers merge reports per cluster and per target first (an upsert may not touch
   * a row twice). Rows are locked in id order, as the builder locks them, so concurrent batches
   * cannot deadlock. Returns the clusters whose generation was recorded.
   */
  async writeReports(reports: AgentReport[]): Promise<Set<string>> {
    if (reports.length === 0) return new Set();
    const sorted = [...reports].sort((a, b) => (a.clusterId < b.clusterId ? -1 : a.clusterId > b.clusterId ? 1 : 0));
    const reported = sorted.flatMap((r) => (r.generation === null ? [] : r.statuses.map((s) => ({ c: r.clusterId, ...s }))));
    // Only what is not applied is kept (publication status reads failures and conflicts; an
    // applied Secret is told by applied_generation and the snapshot). An applied or deleted
    // target clears its row. A healthy fleet's acks therefore write no status rows at all.
    const statuses = reported.filter((s) => s.state === 'failed' || s.state === 'conflict');
    const cleared = reported.filter((s) => s.state !== 'failed' && s.state !== 'conflict');
    const rows = await this.ds.query<[Array<{ id: string }>, number] | Array<{ id: string }>>(
      `WITH r AS (
         SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $14::bool[]) AS r(id, g, v, ack)
       ), locked AS (
         SELECT c.id FROM clusters c WHERE c.id IN (SELECT id FROM r) ORDER BY c.id FOR NO KEY UPDATE
       ), c AS (
         UPDATE clusters c
            SET applied_generation = CASE WHEN r.ack AND r.g IS NOT NULL AND c.built_generation >= r.g
                                          THEN GREATEST(c.applied_generation, r.g) ELSE c.applied_generation END,
                agent_version = coalesce(r.v, c.agent_version),
                last_seen_at = now()
           FROM r
          WHERE c.id = r.id AND c.id IN (SELECT id FROM locked)
         RETURNING c.id, (r.g IS NOT NULL AND c.built_generation >= r.g) AS ok
       ), cleared AS (
         DELETE FROM secret_statuses ss
          -- JSON, not three text[]: a healthy fleet's acks clear every target (100,000 at 10,000
          -- clusters), and node-postgres escapes each array element in JavaScript
          USING jsonb_to_recordset($13::jsonb) AS y(c uuid, n text, m text)
          JOIN c ON c.id = y.c AND c.ok
          WHERE ss.cluster_id = y.c AND ss.namespace = y.n AND ss.name = y.m
       ), saved AS (
         INSERT INTO secret_statuses (cluster_id, namespace, name, secret_id, version, generation, state, reason, message)
         SELECT x.c, x.n, x.m, x.s, x.v, x.g, x.st, x.rs, x.msg
           FROM unnest($4::uuid[], $5::text[], $6::text[], $7::uuid[], $8::int[], $9::bigint[], $10::text[], $11::text[], $12::text[])
             AS x(c, n, m, s, v, g, st, rs, msg)
           JOIN c ON c.id = x.c AND c.ok
          -- only secrets the cluster's snapshot holds: invented targets cannot grow the table
          WHERE EXISTS (SELECT 1 FROM cluster_secrets cs WHERE cs.cluster_id = x.c AND cs.secret_id = x.s)
         ON CONFLICT (cluster_id, namespace, name) DO UPDATE SET secret_id = EXCLUDED.secret_id, version = EXCLUDED.version,
           generation = EXCLUDED.generation, state = EXCLUDED.state, reason = EXCLUDED.reason, message = EXCLUDED.message,
           reported_at = now()
       )
       SELECT id::text AS id FROM c WHERE ok`,
      [
        sorted.map((r) => r.clusterId),
        sorted.map((r) => (r.generation === null ? null : r.generation.toString())),
        sorted.map((r) => r.agentVersion),
        statuses.map((s) => s.c),
        statuses.map((s) => s.namespace),
        statuses.map((s) => s.name),
        statuses.map((s) => s.secretId),
        statuses.map((s) => s.version),
        statuses.map((s) => s.generation),
        statuses.map((s) => s.state),
        statuses.map((s) => s.reason),
        statuses.map((s) => s.message),
        JSON.stringify(cleared.map((s) => ({ c: s.c, n: s.namespace, m: s.name }))),
        sorted.map((r) => r.acked === true),
      ],
    );
    return new Set((rows as Array<{ id: string }>).map((r) => r.id));
  }
}

function bodyOf(r: SnapshotBody): SnapshotBody {
  return {
    secret: r.secret,
    type: r.type,
    projectId: r.projectId,
    app: r.app,
    namespace: r.namespace,
    deliveryMode: r.deliveryMode,
    consumers: r.consumers,
    clusterKeyVersion: r.clusterKeyVersion,
    wrappedDek: r.wrappedDek,
    iv: r.iv,
    ciphertext: r.ciphertext,
  };
}
