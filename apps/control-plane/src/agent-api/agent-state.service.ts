import { status } from '@grpc/grpc-js';
import { Inject, Injectable } from '@nestjs/common';
import {
  DESIRED_SECRET_OVERHEAD_BYTES,
  DESIRED_STATE_PAGE_BYTES,
  DeliveryMode,
  SecretState,
  type GetDesiredStateRequest,
  type GetDesiredStateResponse,
  type ReportStatusRequest,
} from '@sigil/agent-protocol';
import { encodeSecretEnvelope } from '@sigil/envelope';
import { DeliveryRepository } from '../delivery/delivery.repository.js';
import { ClusterEvents } from '../events/cluster-events.js';
import type { ClusterPrincipal } from './agent-authenticator.js';
import { AgentClusterRepository } from './agent-cluster.repository.js';
import { grpcError } from './grpc-errors.js';

const MAX_REPORTED_SECRETS = 10_000;
const STATE_NAMES: Partial<Record<SecretState, string>> = {
  [SecretState.SECRET_STATE_APPLIED]: 'applied',
  [SecretState.SECRET_STATE_FAILED]: 'failed',
  [SecretState.SECRET_STATE_CONFLICT]: 'conflict',
  [SecretState.SECRET_STATE_DELETED]: 'deleted',
};
const REASON = /^[A-Za-z][A-Za-z0-9]{0,63}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * What an authenticated agent reads and reports about its own cluster. Every query is keyed by
 * the principal's cluster id, taken from its certificate, never from the request.
 */
@Injectable()
export class AgentStateService {
  constructor(
    @Inject(AgentClusterRepository) private readonly clusters: AgentClusterRepository,
    @Inject(DeliveryRepository) private readonly delivery: DeliveryRepository,
    @Inject(ClusterEvents) private readonly events: ClusterEvents,
  ) {}

  /** A Watch began: note the agent's version and return the generation to push first. */
  async connected(principal: ClusterPrincipal, agentVersion: string): Promise<bigint> {
    return this.clusters.connected(principal.id, agentVersion);
  }

  /**
   * One page of the cluster's built snapshot. The pages of one listing together are the complete
   * desired state of one generation: the agent deletes any managed Secret not in it, after the
   * last page. A later page asked for a generation that is no longer built is refused (ABORTED
   * snapshot_changed) rather than mixed with another one; the agent lists again. Envelopes are
   * assembled from the shared ciphertext and the data key already wrapped for this cluster — no
   * HSM work here.
   */
  async desiredState(
    principal: ClusterPrincipal,
    req: Pick<GetDesiredStateRequest, 'generation' | 'pageToken'>,
  ): Promise<GetDesiredStateResponse> {
    if (req.pageToken !== '' && !UUID.test(req.pageToken)) {
      throw grpcError(status.INVALID_ARGUMENT, 'invalid_page_token', 'page_token must be a next_page_token this service returned');
    }
    if (req.pageToken !== '' && req.generation === 0n) {
      throw grpcError(status.INVALID_ARGUMENT, 'generation_required', 'a page after the first must name the generation being listed');
    }
    const snap = await this.delivery.snapshotPage(
      principal.id,
      req.pageToken || undefined,
      DESIRED_STATE_PAGE_BYTES,
      DESIRED_SECRET_OVERHEAD_BYTES,
    );
    if (req.generation !== 0n && snap.generation !== req.generation) {
      throw grpcError(
        status.ABORTED,
        'snapshot_changed',
        `generation ${req.generation} is no longer the built one (now ${snap.generation}); list again from the first page`,
      );
    }
    return {
      generation: snap.generation,
      secrets: snap.rows.map((r) => ({
        projectId: r.projectId,
        app: r.app,
        secret: r.secret,
        secretId: r.secretId,
        version: r.version,
        target: { namespace: r.namespace, name: r.secret },
        type: r.type,
        deliveryMode: r.deliveryMode === 'env' ? DeliveryMode.DELIVERY_MODE_ENV : DeliveryMode.DELIVERY_MODE_VOLUME,
        envelope: encodeSecretEnvelope({
          clusterKeyVersion: r.clusterKeyVersion,
          wrappedDek: r.wrappedDek,
          iv: r.iv,
          ciphertext: r.ciphertext,
        }),
        generation: BigInt(r.generation),
      })),
      clusterKeyEnvelopes: snap.keyEnvelopes,
      nextPageToken: snap.next ?? '',
    };
  }

  async report(principal: ClusterPrincipal, req: ReportStatusRequest): Promise<void> {
    if (req.secrets.length > MAX_REPORTED_SECRETS) {
      throw grpcError(status.INVALID_ARGUMENT, 'too_many_statuses', `at most ${MAX_REPORTED_SECRETS} secret statuses per report`);
    }
    const statuses = req.secrets.map((s, i) => {
      const state = STATE_NAMES[s.state];
      if (!state || !s.target?.namespace || !s.target.name || s.target.namespace.length > 63 || s.target.name.length > 253) {
        throw grpcError(status.INVALID_ARGUMENT, 'invalid_status', `secrets[${i}] needs a target and a state`);
      }
      if (s.reason && !REASON.test(s.reason))
        throw grpcError(status.INVALID_ARGUMENT, 'invalid_status', `secrets[${i}].reason must be a CamelCase word`);
      return {
        namespace: s.target.namespace,
        name: s.target.name,
        secretId: UUID.test(s.secretId) ? s.secretId : null,
        version: s.version,
        generation: s.generation.toString(),
        state,
        reason: s.reason,
        message: s.message.slice(0, 500),
      };
    });
    if (!(await this.delivery.reportApplied(principal.id, req.appliedGeneration, statuses))) {
      throw grpcError(
        status.INVALID_ARGUMENT,
        'generation_from_the_future',
        'applied_generation is beyond any generation given to this cluster',
      );
    }
    // Publication long-polls on any replica re-read now instead of polling.
    await this.events.publish({ type: 'status', clusterIds: [principal.id] });
  }
}
