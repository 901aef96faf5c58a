import type { ServerDuplexStream } from '@grpc/grpc-js';
import { Inject, Injectable, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import {
  AgentApiErrorCode,
  DESIRED_SECRET_OVERHEAD_BYTES,
  DESIRED_STATE_PAGE_BYTES,
  type Applied,
  type DesiredState,
  type Grants,
  type SyncRequest,
  type SyncResponse,
} from '@sigil/agent-protocol';
import { PinoLogger } from 'nestjs-pino';
import { SnapshotRepository, type ClusterState } from './snapshot.repository.js';
import { AGENT_VERSION } from '../enrollment/enrollment.service.js';
import { WorkQueue } from '../database/work-queue.js';
import { AgentPresence } from '../events/agent-presence.js';
import { ClusterEvents } from '../events/cluster-events.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { GrantsService } from '../injection/grants.service.js';
import { parseGrants } from './agent-grants.js';
import { AgentAuthenticator, type ClusterPrincipal } from './agent-authenticator.js';
import { AgentClusterRepository } from './agent-cluster.repository.js';
import { parseStatuses } from './agent-reports.js';
import { ByteBudget } from './byte-budget.js';
import { grpcError, toGrpcError } from './grpc-errors.js';
import { SnapshotLoader } from './snapshot-loader.js';
import { StatusWriter } from './status-writer.js';
import { fillPart, newPart, splitState, UNCHANGED_REF_BYTES } from './sync-parts.js';

export type SyncCall = ServerDuplexStream<SyncRequest, SyncResponse>;

/** The window in which agents cut off by a shutdown reconnect (each at a random moment in it). */
export const SHUTDOWN_RETRY_WINDOW_MS = 5_000;

/** How often open streams are re-checked against PostgreSQL, in case an event was lost. */
export const SWEEP_INTERVAL_MS = 5_000;
/** Bytes of desired states held across all streams at most (read and not yet written by gRPC). */
export const STATE_MEMORY_BYTES = 64 * 1024 * 1024;
/** A part gRPC could not write for this long (the agent stopped reading): the stream is ended. */
export const STALLED_WRITE_MS = 60_000;
/** Streams one cluster may hold on a replica at once (see open()). */
export const MAX_STREAMS_PER_CLUSTER = 2;

/** A stream that sent no Hello within this long is ended. */
const HELLO_WITHIN_MS = 30_000;

/**
 * One agent's Sync stream: a few fields, no timers (10,000 of them are mostly idle).
 *
 *   acked         the generation the agent acknowledged on this stream (first: Hello's claim)
 *   inFlight      the generation sent and not yet acknowledged (0: none) — at most one
 *   sent          the highest generation sent; nothing lower is ever sent (ordering)
 *   needComplete  until the first acknowledgement on this stream, and after a Resync
 */
class SyncStream {
  hello = false;
  acked = 0n;
  inFlight = 0n;
  sent = 0n;
  needComplete = true;
  /** Send the current generation even if it is the acknowledged one (Resync, a failed send). */
  force = false;
  phase: 'idle' | 'reading' | 'sending' = 'idle';
  /** A wake-up came while busy: read again once idle. */
  dirty = false;
  closed = false;
  /** Bytes of this stream's parts gRPC has not written yet, and since when it waits (0: not waiting). */
  held = 0;
  writingSince = 0;
  written: (() => void) | undefined;
  readonly openedAt = Date.now();

  constructor(
    readonly principal: ClusterPrincipal,
    readonly call: SyncCall,
  ) {}
}

/**
 * The Sync streams this replica holds, by cluster. Events (local or from Redis) only wake a
 * stream: what it sends is what PostgreSQL holds, read in batches (SnapshotLoader) — so a
 * forged event can neither announce a generation nor hold one back. Acknowledgements are
 * written in batches (StatusWriter). A periodic sweep re-reads built generations and access for
 * every stream in two statements, so a lost event delays but never prevents delivery or
 * revocation. Rules: docs/agent-protocol.md, "The Sync stream".
 */
@Injectable()
export class SyncStreams implements OnModuleInit, OnModuleDestroy {
  private readonly byCluster = new Map<string, Set<SyncStream>>();
  readonly budget = new ByteBudget(STATE_MEMORY_BYTES);
  readonly loader: SnapshotLoader;
  readonly writer: StatusWriter;
  /** Page reads of states too large for a batched read: two at a time (the batched reads also run two). */
  private readonly pageReads = new WorkQueue({ name: 'desired-state pages', concurrency: 2, maxWaiting: 10_000, maxWaitMs: 60_000 });
  private unsubscribe: (() => void) | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private sweeping = false;
  /** Shutting down: streams end, but their clusters stay marked present (agents reconnect elsewhere). */
  private stopping = false;

  constructor(
    @Inject(ClusterEvents) private readonly events: ClusterEvents,
    @Inject(AgentAuthenticator) private readonly auth: AgentAuthenticator,
    @Inject(AgentClusterRepository) private readonly clusters: AgentClusterRepository,
    @Inject(SnapshotRepository) private readonly snapshots: SnapshotRepository,
    @Inject(MetricsService) private readonly metrics: MetricsService,
    @Inject(PinoLogger) private readonly logger: PinoLogger,
    @Inject(GrantsService) private readonly grants: GrantsService,
    @Inject(AgentPresence) private readonly presence: AgentPresence,
  ) {
    logger.setContext('sync-streams');
    this.loader = new SnapshotLoader(snapshots, this.budget);
    this.writer = new StatusWriter(
      snapshots,
      // Publication long-polls on any replica re-read now; a lost event only delays them (they poll too).
      (clusterIds) => void this.events.publish({ type: 'status', clusterIds }).catch(() => undefined),
      (err) => this.logger.warn({ err }, 'could not record agent reports; retrying'),
    );
  }

  onModuleInit(): void {
    this.unsubscribe = this.events.on((e) => {
      if (e.type === 'access-changed') void this.recheck(e.clusterId);
      else if (e.type === 'desired') for (const id of e.clusterIds) for (const s of this.byCluster.get(id) ?? []) this.wake(s);
    });
    this.sweeper = setInterval(() => void this.sweep(), SWEEP_INTERVAL_MS).unref();
    this.presence.track(() => this.byCluster.keys());
  }

  async onModuleDestroy(): Promise<void> {
    this.stopping = true;
    this.unsubscribe?.();
    clearInterval(this.sweeper);
    // Told to come back within a window, at a random moment each: cut off all at once, 10,000
    // agents would otherwise reconnect in the same instant, to this process while it is still
    // shutting down (stealing its CPU with TLS handshakes) and then to the next one all together.
    const shuttingDown = grpcError(
      AgentApiErrorCode.ShuttingDown,
      'this control plane is shutting down; reconnect',
      SHUTDOWN_RETRY_WINDOW_MS,
    );
    for (const set of this.byCluster.values()) for (const s of set) if (!s.call.cancelled) s.call.emit('error', shuttingDown);
    this.byCluster.clear();
    await this.writer.drain().catch(() => undefined);
    this.writer.stop();
  }

  /** Streams open here (tests, metrics). */
  get size(): number {
    let n = 0;
    for (const set of this.byCluster.values()) n += set.size;
    return n;
  }

  /** Takes over an authenticated call: Hello first, then acknowledgements and resyncs. */
  open(principal: ClusterPrincipal, call: SyncCall): void {
    const s = new SyncStream(principal, call);
    let set = this.byCluster.get(principal.id);
    if (!set) this.byCluster.set(principal.id, (set = new Set()));
    // A cluster has one agent; two streams cover a rollout (old pod and new). More would let
    // one certificate multiply what it costs here (reads, buffered states): the oldest goes.
    for (const old of [...set].slice(0, Math.max(0, set.size + 1 - MAX_STREAMS_PER_CLUSTER)))
      this.end(old, grpcError(AgentApiErrorCode.Superseded, 'a newer stream of this cluster replaced this one'));
    set.add(s);
    this.presence.streamOpened(principal.id);
    this.metrics.agentStreams.inc();
    const forget = () => {
      if (s.closed) return;
      s.closed = true;
      this.releaseHeld(s);
      if (set.delete(s) && set.size === 0 && this.byCluster.get(principal.id) === set) {
        this.byCluster.delete(principal.id);
        if (!this.stopping) this.presence.streamClosed(principal.id); // a shutdown leaves them marked: see AgentPresence
      }
      this.metrics.agentStreams.dec();
    };
    call.on('data', (m: SyncRequest) => this.receive(s, m));
    call.on('end', () => {
      forget();
      call.end();
    });
    call.on('cancelled', forget);
    call.on('close', forget);
    call.on('finish', forget);
    call.on('error', forget);
  }

  private receive(s: SyncStream, m: SyncRequest): void {
    if (s.closed) return;
    try {
      const msg = m.message;
      if (!s.hello) {
        if (msg?.$case !== 'hello') throw grpcError(AgentApiErrorCode.HelloExpected, 'the first message on Sync must be a Hello');
        if (!AGENT_VERSION.test(msg.value.agentVersion))
          throw grpcError(AgentApiErrorCode.InvalidAgentVersion, 'agent_version must be at most 64 printable characters');
        s.hello = true;
        s.acked = msg.value.appliedGeneration;
        this.writer.add(s.principal.id, null, msg.value.agentVersion, []);
        this.wake(s);
        return;
      }
      switch (msg?.$case) {
        case 'hello':
          throw grpcError(AgentApiErrorCode.UnexpectedHello, 'Hello is sent once, first');
        case 'applied':
          return this.applied(s, msg.value);
        case 'resync':
          if (s.force && s.needComplete) return; // one is already being answered: no read per repeat
          s.needComplete = true;
          s.force = true;
          s.inFlight = 0n; // the agent abandoned it
          return this.wake(s);
        case 'grants':
          return this.granted(s, msg.value);
        case undefined:
          throw grpcError(AgentApiErrorCode.UnknownMessage, 'unknown Sync message');
      }
    } catch (err) {
      this.fail(s, err);
    }
  }

  /** An acknowledgement of the state in flight, or statuses at the acknowledged generation; nothing else. */
  private applied(s: SyncStream, a: Applied): void {
    const statuses = parseStatuses(a.secrets);
    const ack = s.inFlight !== 0n && a.generation === s.inFlight;
    if (ack) {
      s.acked = a.generation;
      s.inFlight = 0n;
      s.needComplete = false;
    } else if (a.generation !== s.acked) {
      throw grpcError(
        AgentApiErrorCode.UnexpectedGeneration,
        `generation ${a.generation} is neither the one in flight nor the one acknowledged on this stream`,
      );
    }
    // Only an acknowledgement of what this stream sent records the generation as applied; a
    // report at the Hello's claim (nothing sent yet) carries statuses only.
    if (!this.writer.add(s.principal.id, a.generation, null, statuses, ack)) {
      throw grpcError(AgentApiErrorCode.Busy, 'the control plane cannot record reports right now; reconnect shortly', 2_000);
    }
    if (s.dirty && s.inFlight === 0n && s.phase === 'idle') this.wake(s);
  }

  /** What the agent handed to pods (inject mode): checked here, recorded in batches (GrantsService). */
  private granted(s: SyncStream, g: Grants): void {
    const { grants, malformed } = parseGrants(g.grants);
    if (malformed > 0) this.metrics.injectionGrants.inc({ outcome: 'malformed' }, malformed);
    this.grants.add(s.principal.id, grants);
  }

  /** Something may have changed for the stream's cluster: read what PostgreSQL holds (batched with others). */
  private wake(s: SyncStream): void {
    if (s.closed || !s.hello) return;
    if (s.phase !== 'idle' || (s.inFlight !== 0n && !s.force)) {
      s.dirty = true; // one state in flight per stream: newer builds coalesce into the next send
      return;
    }
    s.phase = 'reading';
    s.dirty = false;
    const base = s.needComplete ? 0n : s.acked;
    this.loader.load({
      clusterId: s.principal.id,
      base,
      unless: s.force ? undefined : s.acked,
      hello: s.sent === 0n,
      served: (state, reserved) => this.served(s, base, state, reserved),
      failed: (err) => {
        s.phase = 'idle';
        s.force ||= s.needComplete; // the sweep retries
        this.logger.warn({ err, cluster: s.principal.name }, 'could not read a desired state; the sweep retries');
      },
    });
  }

  private served(s: SyncStream, base: bigint, state: ClusterState, reserved: number): void {
    s.phase = 'idle';
    if (s.closed) return this.budget.release(reserved);
    const built = state.generation;
    // A Resync arrived while reading a delta, or a Hello claimed more than was ever built.
    if (s.needComplete && base !== 0n) {
      this.budget.release(reserved);
      return this.wake(s);
    }
    if (built < s.acked && s.sent === 0n) s.acked = 0n;
    const newer = built > s.acked && built > s.sent;
    // The agent holds the built generation, but the centre never recorded it applied (its ack
    // was lost with a killed replica): send it again; the agent's ack records it and its statuses.
    const unrecorded = s.sent === 0n && built === s.acked && built > 0n && state.kind !== 'current';
    if (!newer && !unrecorded && !(s.force && built >= s.sent && built > 0n)) {
      this.budget.release(reserved);
      if (s.dirty) this.wake(s);
      return;
    }
    s.force = false;
    s.inFlight = built;
    s.sent = built;
    s.phase = 'sending';
    const sending =
      state.kind === 'full'
        ? this.sendParts(s, splitState(built, base, state.keyEnvelopes, state.rows), reserved)
        : (this.budget.release(reserved), this.sendPaged(s, base));
    sending.then(
      () => {
        s.phase = 'idle';
        if (s.dirty && (s.inFlight === 0n || s.force)) this.wake(s);
      },
      (err: unknown) => {
        s.phase = 'idle';
        s.inFlight = 0n;
        s.force = true; // the sweep sends it again, from part 0
        this.logger.warn({ err, cluster: s.principal.name }, 'could not send a desired state; the sweep retries');
      },
    );
  }

  private async sendParts(s: SyncStream, parts: Array<{ message: DesiredState; bytes: number }>, reserved: number): Promise<void> {
    let left = reserved;
    for (const p of parts) {
      const bytes = Math.min(left, p.bytes);
      left -= bytes;
      if (s.closed) {
        this.budget.release(bytes + left);
        return;
      }
      await this.write(s, p.message, bytes);
    }
    this.budget.release(left);
  }

  /**
   * A state too large for a batched read, page by page: each page is read (reserving its bytes)
   * only after the previous part was written. If the built generation moves between pages, the
   * sequence starts again at part 0 of the new one (the agent abandons the unfinished one).
   */
  private async sendPaged(s: SyncStream, base: bigint): Promise<void> {
    let after: string | undefined;
    let part = 0;
    let count = 0;
    let generation: bigint | undefined;
    for (;;) {
      const reserved = await this.budget.take(DESIRED_STATE_PAGE_BYTES + 64 * 1024);
      if (s.closed) return this.budget.release(reserved);
      let page: Awaited<ReturnType<SnapshotRepository['snapshotPage']>>;
      try {
        // Page reads share the pool with builds and enrollment: a few at a time, the rest wait here.
        page = await this.pageReads.run(() =>
          this.snapshots.snapshotPage(
            s.principal.id,
            after,
            base,
            DESIRED_STATE_PAGE_BYTES,
            DESIRED_SECRET_OVERHEAD_BYTES,
            UNCHANGED_REF_BYTES,
          ),
        );
      } catch (err) {
        this.budget.release(reserved);
        throw err;
      }
      if (generation !== undefined && page.generation !== generation) {
        this.budget.release(reserved);
        generation = undefined;
        after = undefined;
        part = 0;
        count = 0;
        continue;
      }
      if (generation === undefined) {
        generation = page.generation;
        s.inFlight = generation;
        s.sent = generation;
      }
      const message = newPart(generation, base, part);
      fillPart(message, page.rows);
      count += page.rows.length;
      if (part === 0) message.clusterKeyEnvelopes = page.keyEnvelopes;
      message.more = page.next !== undefined;
      if (!message.more) message.secretCount = count;
      await this.write(s, message, reserved);
      if (!message.more || s.closed) return;
      after = page.next;
      part++;
    }
  }

  /**
   * Writes one part and resolves once gRPC has written it to the connection (its callback):
   * nothing more is written on the stream before, so grpc-js never buffers more than one part
   * per stream (write() returning false cannot happen with one message queued; waiting for the
   * callback is the stricter 'drain'). The part's bytes stay reserved until then.
   */
  private write(s: SyncStream, message: DesiredState, bytes: number): Promise<void> {
    return new Promise<void>((resolve) => {
      s.held += bytes;
      s.writingSince = Date.now();
      const done = () => {
        if (s.written !== done) return;
        s.written = undefined;
        s.writingSince = 0;
        s.held -= bytes;
        this.budget.release(bytes);
        resolve();
      };
      s.written = done;
      s.call.write({ message: { $case: 'desiredState', value: message } } satisfies SyncResponse, () => done());
    });
  }

  /** The stream ended: whatever it held goes back to the budget, and a waiting write resolves. */
  private releaseHeld(s: SyncStream): void {
    const done = s.written;
    if (done) done();
    if (s.held > 0) {
      this.budget.release(s.held);
      s.held = 0;
    }
  }

  private fail(s: SyncStream, err: unknown): void {
    const { error, internal } = toGrpcError(err);
    if (internal) this.logger.error({ err, cluster: s.principal.name }, 'Sync stream failed');
    this.end(s, error);
  }

  private end(s: SyncStream, error: object): void {
    if (s.closed) return;
    s.call.emit('error', error);
  }

  /** Re-checks the cluster's streams after its access changed; ends those no longer allowed. */
  async recheck(clusterId: string): Promise<void> {
    const set = this.byCluster.get(clusterId);
    if (!set?.size) return;
    const allowed = await this.auth.stillAllowed([...set].map((s) => s.principal)).catch(() => new Set<ClusterPrincipal>());
    for (const s of [...set]) if (!allowed.has(s.principal)) this.revoke(s);
  }

  private revoke(s: SyncStream): void {
    this.logger.info({ cluster: s.principal.name }, 'closing a revoked cluster’s stream');
    this.end(s, grpcError(AgentApiErrorCode.AccessRevoked, 'this cluster’s access was revoked'));
  }

  /**
   * Every SWEEP_INTERVAL_MS, two statements for all streams: access (revoked ones end) and built
   * generations (streams behind are woken). Streams without a Hello, or whose agent stopped
   * reading a part, are ended here rather than by timers of their own.
   */
  private async sweep(): Promise<void> {
    if (this.sweeping || this.byCluster.size === 0) return;
    this.sweeping = true;
    try {
      const now = Date.now();
      const streams = [...this.byCluster.values()].flatMap((set) => [...set]);
      for (const s of streams) {
        if (!s.hello && now - s.openedAt > HELLO_WITHIN_MS) this.end(s, grpcError(AgentApiErrorCode.HelloExpected, 'no Hello was sent'));
        else if (s.writingSince && now - s.writingSince > STALLED_WRITE_MS)
          this.end(s, grpcError(AgentApiErrorCode.Stalled, 'the agent stopped reading; reconnect', 1_000));
      }
      const allowed = await this.auth.stillAllowed(streams.map((s) => s.principal));
      for (const s of streams) if (!allowed.has(s.principal)) this.revoke(s);
      const built = await this.clusters.builtGenerations([...this.byCluster.keys()]);
      for (const s of streams) {
        const b = built.get(s.principal.id);
        if (b !== undefined && s.hello && (b > s.acked || s.force) && b > s.inFlight) this.wake(s);
      }
    } catch (err) {
      this.logger.warn({ err }, 'stream sweep failed; retrying on the next one');
    } finally {
      this.sweeping = false;
    }
  }
}
