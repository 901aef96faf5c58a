import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { ClusterState } from '../clusters/cluster.entity.js';

/** What authorisation needs to know about a cluster. */
export interface ClusterAccess {
  name: string;
  state: ClusterState;
  agentKeySha256: Buffer | null;
}

/**
 * The agent API's reads and writes of cluster rows, always by the id from the caller's
 * certificate. Agent-reported fields (version, last seen, applied generation) do not bump the
 * row's version: that is the operators' ETag.
 */
@Injectable()
export class AgentClusterRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  async accessOf(ids: string[]): Promise<Map<string, ClusterAccess>> {
    if (ids.length === 0) return new Map();
    const rows = await this.ds.query<Array<{ id: string } & ClusterAccess>>(
      `SELECT id, name, state, agent_key_sha256 AS "agentKeySha256" FROM clusters WHERE id = ANY($1::uuid[])`,
      [ids],
    );
    return new Map(rows.map(({ id, ...a }) => [id, a]));
  }

  /** The generation of each cluster's built snapshot: what the Sync streams compare with what they sent. */
  async builtGenerations(ids: string[]): Promise<Map<string, bigint>> {
    if (ids.length === 0) return new Map();
    const rows = await this.ds.query<Array<{ id: string; g: string }>>(
      'SELECT id, built_generation AS g FROM clusters WHERE id = ANY($1::uuid[])',
      [ids],
    );
    return new Map(rows.map((r) => [r.id, BigInt(r.g)]));
  }
}
