import { setTimeout as sleep } from 'node:timers/promises';
import { status as grpcStatus, type ServiceError } from '@grpc/grpc-js';
import {
  AgentApiErrorCode,
  AgentServiceClient,
  AGENT_CHANNEL_OPTIONS,
  type DesiredSecret,
  type Grant,
  ReconnectBackoff,
  agentChannelCredentials,
  errorCodeOf,
  retryAfterMs,
} from '@sigil/agent-protocol';
import { SyncSession, type AssembledState } from '@sigil/agent-sync';
import type { Logger } from '@sigil/logging';
import { DriftWatch } from './drift-watch.js';
import { certificateExpired, enroll, renew, renewalDue, type Credential } from './enrollment.js';
import type { AgentIdentity, IdentityStore } from './identity-store.js';
import { KubeSecrets } from './kube-secrets.js';
import type { KubeClient } from './kube/kube-client.js';
import { agentMetrics, type Registry } from './metrics.js';
import { KubeReconciler } from './reconciler.js';
import type { WorkloadRestarter } from './restarts.js';

export interface AgentOptions {
  address: string;
  caPem: string;
  cluster: string;
  credential: Credential | undefined;
  /** Namespaces the agent serves; undefined: cluster-wide. */
  namespaces: string[] | undefined;
  version: string;
  /** Whether injection is served (--inject). */
  injecting: boolean;
  /** Tests only (SIGIL_AGENT_TEST_SYNC_GATE): see ReconcilerOptions.syncGate. */
  syncGate?: string;
}

/**
 * The edge agent, composed of its three jobs: the session (identity, certificate renewal, and
 * the Sync stream, @sigil/agent-sync SyncSession), the reconciler (each desired state applied to
 * Kubernetes, drift repaired; reconciler.ts) and the drift watch (drift-watch.ts).
 */
export class Agent {
  private identity: AgentIdentity | undefined;
  private client: AgentServiceClient | undefined;
  private session: SyncSession | undefined;
  private stopped = false;
  private renewalTimer: NodeJS.Timeout | undefined;
  private readonly revokedListeners: Array<() => void> = [];
  private readonly appliedListeners: Array<(state: AssembledState, identity: AgentIdentity) => void> = [];
  /** Opens entries restored from the injection cache, until the first live state replaces them. */
  private cachedOpen: ((s: DesiredSecret) => Map<string, Buffer>) | undefined;
  readonly secrets: KubeSecrets;
  private readonly reconciler: KubeReconciler;
  private readonly drift: DriftWatch;
  readonly metrics;

  constructor(
    private readonly opts: AgentOptions,
    private readonly store: IdentityStore,
    kube: KubeClient,
    private readonly logger: Logger,
    registry: Registry,
    restarter: WorkloadRestarter | undefined,
  ) {
    this.secrets = new KubeSecrets(kube, opts.namespaces);
    this.metrics = agentMetrics(registry);
    this.reconciler = new KubeReconciler({
      secrets: this.secrets,
      namespaces: opts.namespaces,
      clusterId: () => this.identity!.clusterId,
      deliveryKeyPem: () => this.identity!.deliveryPrivateKeyPem,
      logger,
      metrics: this.metrics,
      restarter,
      injecting: opts.injecting,
      report: (statuses) => this.session?.report(statuses),
      applied: (state) => {
        this.cachedOpen = undefined; // the live state replaced what the cache restored
        for (const l of this.appliedListeners) l(state, this.identity!);
      },
      ...(opts.syncGate ? { syncGate: opts.syncGate } : {}),
    });
    this.drift = new DriftWatch(kube, opts.namespaces, this.reconciler, logger);
  }

  /** Inject-mode envelopes held for the injection service (inject/injection.ts). */
  get injection() {
    return this.reconciler.injection;
  }

  /** Decrypts one held inject-mode secret now; the caller zeroes the buffers. */
  openInjected(s: DesiredSecret): Map<string, Buffer> {
    try {
      return this.reconciler.open(s);
    } catch (err) {
      if (this.cachedOpen) return this.cachedOpen(s);
      throw err;
    }
  }

  /** Entries restored from the injection cache (offline start), and how to open them. */
  restoreInjected(entries: DesiredSecret[], open: (s: DesiredSecret) => Map<string, Buffer>): void {
    this.cachedOpen = open;
    for (const e of entries) this.reconciler.injection.hold(e);
  }

  /** Drops every inject envelope (held or cached) and the cache; a later complete state brings them back. */
  private revokeInjection(why: string): void {
    if (this.reconciler.injection.size === 0 && !this.cachedOpen) return;
    this.logger.warn({ why }, 'injection revoked: the held and cached inject envelopes are dropped');
    this.cachedOpen = undefined;
    this.reconciler.injection.clear();
    this.session?.forget();
    for (const l of this.revokedListeners) l();
  }

  /** Called when the control plane says this cluster is disabled or gone. */
  onRevoked(listener: () => void): void {
    this.revokedListeners.push(listener);
  }

  /** Called after each desired state is applied, with the identity it was applied under. */
  onApplied(listener: (state: AssembledState, identity: AgentIdentity) => void): void {
    this.appliedListeners.push(listener);
  }

  get clusterName(): string {
    return this.opts.cluster;
  }

  /** Whether this agent serves `namespace` (--namespaces). */
  serves(namespace: string): boolean {
    return this.secrets.serves(namespace);
  }

  /** Sends injection grants to the centre; false when the stream is not open (keep them). */
  sendGrants(grants: Grant[]): boolean {
    return this.session?.grants(grants) ?? false;
  }

  get ready(): boolean {
    return this.identity !== undefined && this.session?.connected === true;
  }

  async start(): Promise<void> {
    this.identity = await this.loadOrEnroll();
    this.connect();
    this.scheduleRenewal();
    this.session = new SyncSession({
      client: () => this.client!,
      agentVersion: this.opts.version,
      reconcile: (state) => this.reconciler.reconcile(state),
      onConnected: (connected) => this.metrics.connected.set(connected ? 1 : 0),
      onEnd: (err) => this.onStreamEnd(err),
      logger: this.logger,
    });
    this.session.start();
    this.drift.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.renewalTimer);
    this.session?.stop();
    this.drift.stop();
    await this.reconciler.stop();
    this.client?.close();
  }

  private async loadOrEnroll(): Promise<AgentIdentity> {
    const stored = await this.store.load();
    if (stored && stored.cluster === this.opts.cluster && !certificateExpired(stored.certificatePem)) {
      this.logger.info({ cluster: stored.cluster, state: this.store.where }, 'using the stored enrollment');
      return stored;
    }
    if (!this.opts.credential) throw new Error(`no usable enrollment in ${this.store.where} and no enrollment credential configured`);
    const backoff = new ReconnectBackoff({ baseMs: 1_000, capMs: 60_000 });
    for (;;) {
      try {
        const identity = await enroll(this.opts.address, this.opts.caPem, this.opts.cluster, this.opts.credential, this.opts.version);
        await this.store.save(identity);
        this.logger.info({ cluster: identity.cluster, clusterId: identity.clusterId, via: this.opts.credential.kind }, 'enrolled');
        return identity;
      } catch (err) {
        const e = err as ServiceError;
        // A refused credential will not get better by retrying quickly; an unavailable control plane might.
        const delay = backoff.next(retryAfterMs(e.metadata));
        this.logger.warn({ code: e.code, details: e.details, retryInMs: delay }, 'enrollment failed');
        // The control plane answered and refused this cluster (disabled, deleted, identity gone):
        // nothing restored from the injection cache may be served any longer.
        if (e.code === grpcStatus.UNAUTHENTICATED || e.code === grpcStatus.PERMISSION_DENIED) this.revokeInjection('enrollment refused');
        if (this.stopped) throw err;
        await sleep(e.code === grpcStatus.UNAUTHENTICATED || e.code === grpcStatus.PERMISSION_DENIED ? Math.max(delay, 10_000) : delay);
      }
    }
  }

  private connect(): void {
    this.client?.close();
    const id = this.identity!;
    this.client = new AgentServiceClient(
      this.opts.address,
      agentChannelCredentials(this.opts.caPem, { keyPem: id.tlsKeyPem, certificatePem: id.certificatePem }),
      AGENT_CHANNEL_OPTIONS,
    );
  }

  /** A refusal: a certificate that is expired or superseded is dropped from the store (the next start enrolls again). */
  private onStreamEnd(err: ServiceError | undefined): void {
    if (err?.code !== grpcStatus.UNAUTHENTICATED && err?.code !== grpcStatus.PERMISSION_DENIED) return;
    this.logger.warn({ code: err.code, details: err.details }, 'the control plane refused this agent');
    const code = errorCodeOf(err);
    // Kubernetes Secrets stay (an operator re-enables or unpublishes); injected values stop at once.
    if (code === AgentApiErrorCode.ClusterDisabled || code === AgentApiErrorCode.ClusterNotFound) this.revokeInjection(code);
    if (certificateExpired(this.identity!.certificatePem) || errorCodeOf(err) === AgentApiErrorCode.CertificateSuperseded) {
      void this.store.save({ ...this.identity!, certificatePem: '' }).catch(() => undefined);
    }
  }

  private scheduleRenewal(): void {
    const due = renewalDue(this.identity!.certificatePem).getTime() - Date.now();
    this.renewalTimer = setTimeout(() => void this.renewNow(), Math.min(Math.max(due, 1_000), 2 ** 31 - 1)).unref();
  }

  private async renewNow(): Promise<void> {
    try {
      this.identity = await renew(this.client!, this.identity!);
      await this.store.save(this.identity);
      this.logger.info({ renewAt: renewalDue(this.identity.certificatePem) }, 'certificate renewed');
      this.connect();
      this.session?.reconnect(); // the stream again, with the new certificate, from the state held
    } catch (err) {
      this.logger.warn({ code: (err as ServiceError).code }, 'certificate renewal failed; retrying in a minute');
      this.renewalTimer = setTimeout(() => void this.renewNow(), 60_000).unref();
      return;
    }
    this.scheduleRenewal();
  }
}
