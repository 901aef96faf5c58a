import { connectivityState, status as grpcStatus, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import {
  ReconnectBackoff,
  retryAfterMs,
  type AgentServiceClient,
  type Grant,
  type SecretStatus,
  type SyncRequest,
  type SyncResponse,
} from '@sigil/agent-protocol';
import { StateAssembler, type AssembledState, type HeldState } from './assembler.js';

/** The little of a pino logger the session uses; values never reach it. */
export interface SyncLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface SyncSessionOptions {
  /** The client to open each stream on; asked at every (re)connect, so a renewed certificate is used. */
  client(): AgentServiceClient;
  agentVersion: string;
  /**
   * Applies one assembled desired state and returns its statuses (see SecretSync); the session
   * acknowledges it with them. Never called twice at once. A throw is not acknowledged: the
   * stream is restarted, and the control plane sends a complete state again.
   */
  reconcile(state: AssembledState): Promise<SecretStatus[]>;
  /**
   * How a stream ended (undefined: the server closed it OK, or stop()). Return 'stop' to stop
   * reconnecting. The agent uses it for UNAUTHENTICATED / PERMISSION_DENIED.
   */
  onEnd?(err: ServiceError | undefined): 'stop' | void;
  /** Called when the stream is known to be accepted (headers or a message arrived), and when it ends. */
  onConnected?(connected: boolean): void;
  backoff?: ReconnectBackoff;
  /** A stream that stayed up this long counts as healthy: the next failure starts backoff from scratch. */
  healthyMs?: number;
  logger?: SyncLogger;
  /** A held state to start from (nothing is persisted across processes by default). */
  held?: HeldState;
}

const HEALTHY_STREAM_MS = 30_000;
/** Grants per Sync message (the control plane accepts up to 1,000). */
const MAX_GRANTS_PER_MESSAGE = 500;
/** How long one wait for a connection lasts before it is renewed (the channel keeps retrying either way). */
const CONNECT_WAIT_MS = 60_000;

/**
 * The agent's side of the Sync stream (proto/sigil/agent/v1/agent.proto, docs/agent-protocol.md):
 * Hello with the held generation, assemble each state (StateAssembler), reconcile it, acknowledge
 * it with its statuses; statuses found between states go up at the acknowledged generation. It
 * reconnects with jittered backoff (honouring the server's retry window) and keeps the held state
 * across reconnects, so a reconnect at the generation the control plane has built costs nothing.
 * Idle, it holds one stream and no timer; a timer exists only while waiting to reconnect.
 */
export class SyncSession {
  private call: ClientDuplexStream<SyncRequest, SyncResponse> | undefined;
  private readonly assembler = new StateAssembler();
  private readonly backoff: ReconnectBackoff;
  private held: HeldState | undefined;
  private stopped = true;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconciling = false;
  /** A state assembled while another was being reconciled (the newest wins). */
  private next: { state: AssembledState; call: ClientDuplexStream<SyncRequest, SyncResponse> } | undefined;
  /** Statuses found between states not yet sent (no stream was open), by target. */
  private unsent: Map<string, SecretStatus> | undefined;
  /** Resync already asked on this stream and not yet answered by a part 0. */
  private resyncAsked = false;
  private accepted = false;
  /** The client whose channel is being waited for (see connectFirst). */
  private waitingForChannel: AgentServiceClient | undefined;

  constructor(private readonly opts: SyncSessionOptions) {
    this.backoff = opts.backoff ?? new ReconnectBackoff();
    this.held = opts.held;
  }

  /** The generation held, complete and acknowledged (0: none). */
  get appliedGeneration(): bigint {
    return this.held?.generation ?? 0n;
  }

  get heldState(): HeldState | undefined {
    return this.held;
  }

  /** Open and accepted by the control plane. */
  get connected(): boolean {
    return this.call !== undefined && this.accepted;
  }

  get running(): boolean {
    return !this.stopped;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.open();
  }

  stop(): void {
    this.stopped = true;
    this.waitingForChannel = undefined;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const call = this.call;
    this.call = undefined;
    call?.cancel();
  }

  /** Forgets the held state: the next Hello says 0, so the next state is complete (injection was cleared). */
  forget(): void {
    this.held = undefined;
  }

  /** Ends the stream and opens a new one at once (a renewed certificate, a test). */
  reconnect(): void {
    if (this.stopped) return;
    const call = this.call;
    this.teardown();
    call?.cancel();
    clearTimeout(this.reconnectTimer);
    this.waitingForChannel = undefined;
    this.open();
  }

  /** Asks for a complete state of the current generation. */
  resync(): void {
    if (this.call && !this.resyncAsked) {
      this.resyncAsked = true;
      this.call.write({ message: { $case: 'resync', value: {} } });
    }
  }

  /** Sends injection grants (no values) if the stream is open; false: not sent, keep them. */
  grants(grants: Grant[]): boolean {
    if (grants.length === 0) return true;
    if (!this.call || !this.held) return false;
    for (let i = 0; i < grants.length; i += MAX_GRANTS_PER_MESSAGE)
      this.call.write({ message: { $case: 'grants', value: { grants: grants.slice(i, i + MAX_GRANTS_PER_MESSAGE) } } });
    return true;
  }

  /**
   * Statuses found since the last acknowledgement (a drift repair that failed, or recovered):
   * sent at once at the acknowledged generation, or after the next Hello.
   */
  report(statuses: SecretStatus[]): void {
    if (statuses.length === 0) return;
    if (this.call && this.held) {
      this.call.write({ message: { $case: 'applied', value: { generation: this.held.generation, secrets: statuses } } });
      return;
    }
    this.unsent ??= new Map();
    for (const s of statuses) this.unsent.set(`${s.target?.namespace}/${s.target?.name}/${s.secretId}`, s);
  }

  private open(): void {
    this.reconnectTimer = undefined;
    if (this.stopped) return;
    const client = this.opts.client();
    if (client.getChannel().getConnectivityState(true) !== connectivityState.READY) {
      this.connectFirst(client);
      return;
    }
    this.openStream(client);
  }

  /**
   * Not connected: wait for the channel, which retries with its own bounded backoff
   * (AGENT_CHANNEL_OPTIONS, ≤ 5 s), instead of failing the stream and letting this session's
   * backoff grow. A control plane that restarts, or resets connections beyond its handshake
   * bound, then sees each agent again within seconds of being able to take it, not after a
   * backoff that grew while it could not.
   */
  private connectFirst(client: AgentServiceClient): void {
    this.waitingForChannel = client;
    client.waitForReady(Date.now() + CONNECT_WAIT_MS, (err) => {
      if (this.waitingForChannel !== client) return; // stop() or reconnect() meanwhile
      this.waitingForChannel = undefined;
      if (this.stopped) return;
      if (err) {
        // Still unreachable after a whole wait: say so (a wrong address, certificate or proxy
        // shows here, not as a failed stream), and keep waiting.
        this.opts.logger?.warn({ waitedMs: CONNECT_WAIT_MS }, 'control plane not reachable yet; still trying');
        this.connectFirst(client);
      } else this.openStream(client);
    });
  }

  private openStream(client: AgentServiceClient): void {
    const call = client.sync();
    this.call = call;
    this.accepted = false;
    this.resyncAsked = false;
    const opened = Date.now();
    let ended = false;
    const end = (err: ServiceError | undefined) => {
      if (ended) return;
      ended = true;
      if (this.call !== call) return; // replaced by reconnect() or stop()
      this.teardown();
      this.ended(err, Date.now() - opened);
    };
    call.on('metadata', () => this.accept(call));
    call.on('data', (m: SyncResponse) => {
      if (this.call !== call) return;
      this.accept(call);
      if (m.message?.$case === 'desiredState') this.onPart(m.message.value, call);
    });
    call.on('error', (err: ServiceError) => end(err));
    call.on('end', () => end(undefined));
    call.write({
      message: { $case: 'hello', value: { appliedGeneration: this.held?.generation ?? 0n, agentVersion: this.opts.agentVersion } },
    });
    if (this.unsent && this.held) {
      const statuses = [...this.unsent.values()];
      this.unsent = undefined;
      this.report(statuses);
    }
  }

  private accept(call: ClientDuplexStream<SyncRequest, SyncResponse>): void {
    if (this.accepted || this.call !== call) return;
    this.accepted = true;
    this.opts.onConnected?.(true);
  }

  private teardown(): void {
    const wasAccepted = this.accepted;
    this.call = undefined;
    this.accepted = false;
    this.next = undefined;
    this.assembler.reset();
    if (wasAccepted) this.opts.onConnected?.(false);
  }

  private ended(err: ServiceError | undefined, livedMs: number): void {
    if (this.stopped) return;
    if (this.opts.onEnd?.(err) === 'stop') {
      this.stopped = true;
      return;
    }
    if (livedMs > (this.opts.healthyMs ?? HEALTHY_STREAM_MS)) this.backoff.reset();
    const delay = this.backoff.next(retryAfterMs(err?.metadata));
    this.opts.logger?.info({ code: err?.code ?? grpcStatus.OK, retryInMs: delay }, 'sync stream ended; reconnecting');
    this.reconnectTimer = setTimeout(() => this.open(), delay);
    this.reconnectTimer.unref?.();
  }

  private onPart(part: Parameters<StateAssembler['feed']>[0], call: ClientDuplexStream<SyncRequest, SyncResponse>): void {
    if (part.part === 0) this.resyncAsked = false;
    const r = this.assembler.feed(part, this.held);
    if (r.kind === 'complete') {
      this.enqueue(r.state, call);
    } else if (r.kind === 'resync') {
      this.opts.logger?.warn(
        { generation: part.generation.toString(), base: part.baseGeneration.toString(), reason: r.reason },
        r.complete
          ? 'a complete desired state failed its check; reconnecting'
          : 'cannot apply this desired state; asking for a complete one',
      );
      // A complete state that does not add up will not add up when asked again: back off instead.
      if (r.complete) call.cancel();
      else this.resync();
    }
  }

  private enqueue(state: AssembledState, call: ClientDuplexStream<SyncRequest, SyncResponse>): void {
    if (this.reconciling) {
      this.next = { state, call };
      return;
    }
    void this.run(state, call);
  }

  private async run(state: AssembledState, call: ClientDuplexStream<SyncRequest, SyncResponse>): Promise<void> {
    this.reconciling = true;
    try {
      let statuses: SecretStatus[];
      try {
        statuses = await this.opts.reconcile(state);
      } catch (err) {
        this.opts.logger?.warn(
          { generation: state.generation.toString(), error: (err as Error).name, message: (err as Error).message },
          'could not apply a desired state; it will be sent again',
        );
        if (this.call === call) call.cancel();
        return;
      }
      // Acknowledged only on the stream it came on; after a gap the new stream's Hello names
      // what is held, and the control plane sends this generation again.
      if (this.call !== call || this.stopped) return;
      this.held = { generation: state.generation, secrets: state.secrets, clusterKeyEnvelopes: state.clusterKeyEnvelopes };
      this.unsent = undefined; // a state's statuses include every secret not currently applied
      call.write({ message: { $case: 'applied', value: { generation: state.generation, secrets: statuses } } });
    } finally {
      this.reconciling = false;
      const next = this.next;
      this.next = undefined;
      if (next && next.call === this.call) void this.run(next.state, next.call);
    }
  }
}
