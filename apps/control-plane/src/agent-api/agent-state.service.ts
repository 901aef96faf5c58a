import { status } from '@grpc/grpc-js';
import { Inject, Injectable } from '@nestjs/common';
import type { GetDesiredStateResponse, ReportStatusRequest } from '@sigil/agent-protocol';
import { ClusterKeyService } from '../keys/cluster-keys.service.js';
import type { ClusterPrincipal } from './agent-authenticator.js';
import { AgentClusterRepository } from './agent-cluster.repository.js';
import { grpcError } from './grpc-errors.js';

const MAX_REPORTED_SECRETS = 10_000;

/**
 * What an authenticated agent reads and reports about its own cluster. Every query is keyed by
 * the principal's cluster id, taken from its certificate, never from the request.
 */
@Injectable()
export class AgentStateService {
  constructor(
    @Inject(AgentClusterRepository) private readonly clusters: AgentClusterRepository,
    @Inject(ClusterKeyService) private readonly clusterKeys: ClusterKeyService,
  ) {}

  /** A Watch began: note the agent's version and return the generation to push first. */
  async connected(principal: ClusterPrincipal, agentVersion: string): Promise<bigint> {
    return this.clusters.connected(principal.id, agentVersion);
  }

  /**
   * The cluster's desired state. Publications (what fills `secrets`) arrive with the delivery
   * pipeline; until an app is published to the cluster its desired state is empty, and that is
   * what this returns, with the delivery key envelope the agent needs for later envelopes.
   */
  async desiredState(principal: ClusterPrincipal, _sinceGeneration: bigint): Promise<GetDesiredStateResponse> {
    const generation = (await this.clusters.desiredGenerations([principal.id])).get(principal.id) ?? 0n;
    const key = await this.clusterKeys.activeEnvelope(principal.id);
    return {
      generation,
      full: true,
      secrets: [],
      removed: [],
      clusterKeyEnvelopes: key ? [key.envelope] : [],
    };
  }

  async report(principal: ClusterPrincipal, req: ReportStatusRequest): Promise<void> {
    if (req.secrets.length > MAX_REPORTED_SECRETS) {
      throw grpcError(status.INVALID_ARGUMENT, 'too_many_statuses', `at most ${MAX_REPORTED_SECRETS} secret statuses per report`);
    }
    if (!(await this.clusters.reportApplied(principal.id, req.appliedGeneration))) {
      throw grpcError(status.INVALID_ARGUMENT, 'generation_from_the_future', 'applied_generation is beyond the desired generation');
    }
  }
}
