import { status, type ServerWritableStream } from '@grpc/grpc-js';
import { Inject, Injectable, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import type { WatchRequest, WatchResponse } from '@sigil/agent-protocol';
import { PinoLogger } from 'nestjs-pino';
import { ClusterEvents } from '../events/cluster-events.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { AgentAuthenticator, type ClusterPrincipal } from './agent-authenticator.js';
import { AgentClusterRepository } from './agent-cluster.repository.js';
import { grpcError } from './grpc-errors.js';

type WatchCall = ServerWritableStream<WatchRequest, WatchResponse>;

interface OpenStream {
  principal: ClusterPrincipal;
  call: WatchCall;
  /** The last generation pushed; pushes only ever go up. */
  pushed: bigint;
}

/** How often open streams are re-checked against PostgreSQL, in case an event was lost. */
export const SWEEP_INTERVAL_MS = 5_000;

/**
 * The Watch streams this replica holds, by cluster. Events from any replica push a new desired
 * generation or close a revoked cluster's streams at once; a periodic sweep re-reads the same
 * facts from PostgreSQL so a lost event delays but never prevents either. An event's generation
 * is only a hint that something changed: what is pushed is always the generation PostgreSQL
 * holds (read for the clusters the hints name, batched), so a forged or replayed event on Redis
 * can neither announce a generation that does not exist nor, by raising `pushed`, hold back the
 * real ones.
 */
@Injectable()
export class WatchStreams implements OnModuleInit, OnModuleDestroy {
  private readonly byCluster = new Map<string, Set<OpenStream>>();
  private unsubscribe: (() => void) | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private sweeping = false;
  /** Clusters whose generation an event hinted at, to be read from PostgreSQL in one query. */
  private hinted = new Set<string>();
  private confirming: Promise<void> | undefined;

  constructor(
    @Inject(ClusterEvents) private readonly events: ClusterEvents,
    @Inject(AgentAuthenticator) private readonly auth: AgentAuthenticator,
    @Inject(AgentClusterRepository) private readonly clusters: AgentClusterRepository,
    @Inject(MetricsService) private readonly metrics: MetricsService,
    @Inject(PinoLogger) private readonly logger: PinoLogger,
  ) {
    logger.setContext('watch-streams');
  }

  onModuleInit(): void {
    this.unsubscribe = this.events.on((e) => {
      if (e.type === 'access-changed') void this.recheck(e.clusterId);
      // Events are hints, confirmed against PostgreSQL before anything is pushed.
      else if (e.type === 'desired') for (const id of e.clusterIds) this.hint(id, '');
    });
    this.sweeper = setInterval(() => void this.sweep(), SWEEP_INTERVAL_MS).unref();
  }

  onModuleDestroy(): void {
    this.unsubscribe?.();
    clearInterval(this.sweeper);
    for (const set of this.byCluster.values()) for (const s of set) s.call.end();
    this.byCluster.clear();
  }

  /** Holds `call` open for `principal`, starting at `generation`; forgets it when the agent goes. */
  open(principal: ClusterPrincipal, call: WatchCall, generation: bigint): void {
    const stream: OpenStream = { principal, call, pushed: -1n };
    let set = this.byCluster.get(principal.id);
    if (!set) this.byCluster.set(principal.id, (set = new Set()));
    set.add(stream);
    this.metrics.agentStreams.inc();
    const forget = () => {
      if (!set.delete(stream)) return;
      if (set.size === 0 && this.byCluster.get(principal.id) === set) this.byCluster.delete(principal.id);
      this.metrics.agentStreams.dec();
    };
    call.on('cancelled', forget);
    call.on('close', forget);
    call.on('finish', forget);
    call.on('error', forget);
    this.write(stream, generation);
  }

  /** An event says the cluster's generation may have grown to `generation`: confirm with PostgreSQL. */
  private hint(clusterId: string, generation: string): void {
    const set = this.byCluster.get(clusterId);
    if (!set?.size) return;
    // Nothing to confirm when every stream already has at least that generation.
    const g = /^\d{1,20}$/.test(generation) ? BigInt(generation) : undefined;
    if (g !== undefined && [...set].every((s) => s.pushed >= g)) return;
    this.hinted.add(clusterId);
    this.confirming ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.confirm());
  }

  private async confirm(): Promise<void> {
    const ids = [...this.hinted];
    this.hinted = new Set();
    try {
      for (const [id, generation] of await this.clusters.builtGenerations(ids)) this.push(id, generation);
    } catch (err) {
      this.logger.warn({ err }, 'could not read generations for cluster events; the next sweep pushes them');
    } finally {
      this.confirming = undefined;
      if (this.hinted.size > 0) this.confirming = this.confirm();
    }
  }

  /** Pushes `generation` (as read from PostgreSQL) to the cluster's streams here, if it is newer than what they have. */
  push(clusterId: string, generation: bigint): void {
    for (const s of this.byCluster.get(clusterId) ?? []) this.write(s, generation);
  }

  /** Re-checks the cluster's streams after its access changed; closes those no longer allowed. */
  async recheck(clusterId: string): Promise<void> {
    const set = this.byCluster.get(clusterId);
    if (!set?.size) return;
    const allowed = await this.auth.stillAllowed([...set].map((s) => s.principal)).catch(() => new Set<ClusterPrincipal>());
    for (const s of [...set]) if (!allowed.has(s.principal)) this.close(s);
  }

  private close(s: OpenStream): void {
    this.logger.info({ cluster: s.principal.name }, 'closing a revoked cluster’s stream');
    s.call.emit('error', grpcError(status.PERMISSION_DENIED, 'access_revoked', 'this cluster’s access was revoked'));
  }

  private write(s: OpenStream, generation: bigint): void {
    if (generation <= s.pushed || s.call.cancelled) return;
    s.pushed = generation;
    s.call.write({ desiredGeneration: generation } satisfies WatchResponse);
  }

  /** Closes streams whose cluster lost access, and pushes generations an event did not bring. */
  private async sweep(): Promise<void> {
    if (this.sweeping || this.byCluster.size === 0) return;
    this.sweeping = true;
    try {
      const streams = [...this.byCluster.values()].flatMap((set) => [...set]);
      const allowed = await this.auth.stillAllowed(streams.map((s) => s.principal));
      for (const s of streams) if (!allowed.has(s.principal)) this.close(s);
      for (const [id, generation] of await this.clusters.builtGenerations([...this.byCluster.keys()])) this.push(id, generation);
    } catch (err) {
      this.logger.warn({ err }, 'stream sweep failed; retrying on the next one');
    } finally {
      this.sweeping = false;
    }
  }
}
