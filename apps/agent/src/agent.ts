import { setTimeout as sleep } from 'node:timers/promises';
import { Metadata, status as grpcStatus, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import {
  AgentServiceClient,
  AGENT_MESSAGE_LIMITS,
  ReconnectBackoff,
  SecretState,
  agentChannelCredentials,
  retryAfterMs,
  unary,
  type DesiredSecret,
  type SecretStatus,
  type WatchResponse,
} from '@sigil/agent-protocol';
import { decodeSecretPayload, openClusterKeyEnvelope, openSecretEnvelope } from '@sigil/envelope';
import type { Logger } from '@sigil/logging';
import { fetchDesiredState } from './desired-state.js';
import { certificateExpired, enroll, renew, renewalDue, type Credential } from './enrollment.js';
import type { AgentIdentity, IdentityStore } from './identity-store.js';
import { KubeSecrets, type SecretToWrite } from './kube-secrets.js';
import type { KubeClient } from './kube/kube-client.js';
import type { Secret } from './kube/types.js';
import { MANAGED_BY, MANAGED_BY_SIGIL } from './labels.js';
import { Counter, Gauge, type Registry } from './metrics.js';
import type { WorkloadRestarter } from './restarts.js';

export interface AgentOptions {
  address: string;
  caPem: string;
  cluster: string;
  credential: Credential | undefined;
  /** Namespaces the agent serves; undefined: cluster-wide. */
  namespaces: string[] | undefined;
  version: string;
}

/** A stream that stayed up this long counts as healthy: the next failure starts backoff from scratch. */
const HEALTHY_STREAM_MS = 30_000;
const key = (namespace: string, name: string) => `${namespace}/${name}`;

/**
 * The edge agent: holds one Watch stream, and on every new generation (and after every gap)
 * fetches the complete desired state, writes what changed, deletes what is no longer wanted,
 * repairs drift it sees on its Secret watch, and reports per-Secret status. Values are
 * decrypted only inside a write and zeroed after it.
 */
export class Agent {
  private identity: AgentIdentity | undefined;
  private client: AgentServiceClient | undefined;
  private stream: ClientReadableStream<WatchResponse> | undefined;
  private stopped = false;
  private syncing: Promise<void> | undefined;
  private syncAgain = false;
  private renewalTimer: NodeJS.Timeout | undefined;
  private readonly kubeWatches: AbortController[] = [];
  /** The last complete desired state (encrypted), kept to repair drift without asking again. */
  private desired = new Map<string, DesiredSecret>();
  private clusterKeys = new Map<number, Buffer>();
  /** resourceVersion of each Secret as this agent last wrote or saw it unchanged. */
  private readonly written = new Map<string, string>();
  private appliedGeneration = 0n;
  readonly secrets: KubeSecrets;
  private readonly metrics;

  constructor(
    private readonly opts: AgentOptions,
    private readonly store: IdentityStore,
    private readonly kube: KubeClient,
    private readonly logger: Logger,
    registry: Registry,
    private readonly restarter: WorkloadRestarter | undefined,
  ) {
    this.secrets = new KubeSecrets(kube);
    this.metrics = {
      connected: new Gauge({ name: 'sigil_agent_connected', help: '1 while the Watch stream is open', registers: [registry] }),
      generation: new Gauge({
        name: 'sigil_agent_applied_generation',
        help: 'Last applied desired-state generation',
        registers: [registry],
      }),
      managed: new Gauge({ name: 'sigil_agent_managed_secrets', help: 'Secrets this agent manages', registers: [registry] }),
      syncs: new Counter({
        name: 'sigil_agent_syncs_total',
        help: 'Desired-state syncs by outcome',
        labelNames: ['outcome'] as const,
        registers: [registry],
      }),
      repairs: new Counter({
        name: 'sigil_agent_drift_repairs_total',
        help: 'Managed Secrets restored after a manual edit or deletion',
        registers: [registry],
      }),
    };
  }

  get ready(): boolean {
    return this.identity !== undefined && this.stream !== undefined;
  }

  async start(): Promise<void> {
    this.identity = await this.loadOrEnroll();
    this.connect();
    this.scheduleRenewal();
    void this.watchLoop();
    this.watchSecrets();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.renewalTimer);
    this.stream?.cancel();
    for (const w of this.kubeWatches) w.abort();
    await this.syncing?.catch(() => undefined);
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
      { 'grpc.keepalive_time_ms': 60_000, 'grpc.keepalive_timeout_ms': 20_000, ...AGENT_MESSAGE_LIMITS },
    );
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
      this.stream?.cancel(); // reconnect with the new certificate
    } catch (err) {
      this.logger.warn({ code: (err as ServiceError).code }, 'certificate renewal failed; retrying in a minute');
      this.renewalTimer = setTimeout(() => void this.renewNow(), 60_000).unref();
      return;
    }
    this.scheduleRenewal();
  }

  /** One stream at a time; after any gap, reconnect with jittered backoff and resync in full. */
  private async watchLoop(): Promise<void> {
    const backoff = new ReconnectBackoff();
    while (!this.stopped) {
      const opened = Date.now();
      const ended = await new Promise<ServiceError | undefined>((resolve) => {
        const stream = this.client!.watch({ appliedGeneration: this.appliedGeneration, agentVersion: this.opts.version });
        this.stream = stream;
        stream.on('data', (m: WatchResponse) => {
          this.metrics.connected.set(1);
          if (m.desiredGeneration !== this.appliedGeneration || this.desired.size === 0) this.requestSync();
        });
        stream.on('error', (err: ServiceError) => resolve(err));
        stream.on('end', () => resolve(undefined));
      });
      this.stream = undefined;
      this.metrics.connected.set(0);
      if (this.stopped) return;
      if (ended?.code === grpcStatus.UNAUTHENTICATED || ended?.code === grpcStatus.PERMISSION_DENIED) {
        this.logger.warn({ code: ended.code, details: ended.details }, 'the control plane refused this agent');
        if (certificateExpired(this.identity!.certificatePem) || ended.metadata?.get('sigil-error-code')[0] === 'certificate_superseded') {
          await this.store.save({ ...this.identity!, certificatePem: '' }).catch(() => undefined);
        }
      }
      if (Date.now() - opened > HEALTHY_STREAM_MS) backoff.reset();
      const delay = backoff.next(retryAfterMs(ended?.metadata));
      this.logger.info({ code: ended?.code, retryInMs: delay }, 'watch stream ended; reconnecting');
      await sleep(delay);
    }
  }

  /** Coalesces notifications: at most one sync runs, and one more follows if anything arrived meanwhile. */
  requestSync(): void {
    if (this.syncing) {
      this.syncAgain = true;
      return;
    }
    this.syncing = (async () => {
      do {
        this.syncAgain = false;
        try {
          await this.sync();
          this.metrics.syncs.inc({ outcome: 'ok' });
        } catch (err) {
          this.metrics.syncs.inc({ outcome: 'error' });
          this.logger.warn(
            { code: (err as ServiceError).code, message: (err as Error).message },
            'sync failed; the next notification or reconnect retries',
          );
        }
      } while (this.syncAgain && !this.stopped);
    })().finally(() => (this.syncing = undefined));
  }

  private async sync(): Promise<void> {
    const state = await fetchDesiredState(this.client!);
    this.clusterKeys = new Map(
      state.clusterKeyEnvelopes.map((e) => {
        const k = openClusterKeyEnvelope(this.identity!.deliveryPrivateKeyPem, e);
        return [k.version, k.key] as const;
      }),
    );
    const desired = new Map(state.secrets.map((s) => [key(s.target!.namespace, s.target!.name), s]));
    this.desired = desired;
    const statuses: SecretStatus[] = [];
    const changed = new Map<string, string[]>();
    for (const s of desired.values()) {
      const status = await this.apply(s, false);
      statuses.push(status.report);
      if (status.changed) changed.set(s.target!.namespace, [...(changed.get(s.target!.namespace) ?? []), s.target!.name]);
    }
    // Delete what this agent manages and is no longer desired (it is only ever told the complete state).
    for (const m of await this.secrets.listManaged(this.opts.namespaces)) {
      if (desired.has(key(m.namespace, m.name))) continue;
      const outcome = await this.secrets.delete(m.namespace, m.name);
      this.written.delete(key(m.namespace, m.name));
      if (outcome === 'deleted') this.logger.info({ target: key(m.namespace, m.name) }, 'deleted a Secret that is no longer published');
      statuses.push({
        target: m,
        secretId: '',
        version: 0,
        generation: state.generation,
        state: SecretState.SECRET_STATE_DELETED,
        reason: '',
        message: '',
      });
    }
    await unary((cb) =>
      this.client!.reportStatus(
        { appliedGeneration: state.generation, secrets: statuses },
        new Metadata(),
        { deadline: Date.now() + 30_000 },
        cb,
      ),
    );
    this.appliedGeneration = state.generation;
    this.metrics.generation.set(Number(state.generation));
    this.metrics.managed.set(desired.size);
    this.logger.info({ generation: state.generation.toString(), secrets: desired.size }, 'desired state applied');
    if (this.restarter) for (const [ns, names] of changed) await this.restarter.secretsChanged(ns, names);
  }

  /** Writes one Secret; the values exist in memory only inside `open()` → write → zero. */
  private async apply(s: DesiredSecret, force: boolean): Promise<{ report: SecretStatus; changed: boolean }> {
    const target = s.target!;
    const toWrite: SecretToWrite = {
      namespace: target.namespace,
      name: target.name,
      type: s.type,
      app: s.app,
      source: `${s.projectId}/${s.app}/${s.secret}`,
      secretId: s.secretId,
      version: s.version,
      generation: s.generation,
      envelope: s.envelope,
      open: () => {
        const payload = openSecretEnvelope(s.envelope, this.clusterKeys, {
          projectId: s.projectId,
          app: s.app,
          secret: s.secret,
          secretId: s.secretId,
          version: s.version,
        });
        try {
          return decodeSecretPayload(payload);
        } finally {
          payload.fill(0);
        }
      },
    };
    const base = { target, secretId: s.secretId, version: s.version, generation: s.generation, message: '' };
    let outcome;
    try {
      outcome = await this.secrets.write(toWrite, force);
    } catch (err) {
      this.logger.warn({ target: key(target.namespace, target.name), error: (err as Error).name }, 'could not open or write a Secret');
      return { report: { ...base, state: SecretState.SECRET_STATE_FAILED, reason: 'DecryptFailed' }, changed: false };
    }
    if (outcome.state === 'conflict') {
      this.logger.warn(
        { target: key(target.namespace, target.name) },
        'a Secret with this name exists and is not managed by Sigil; left alone',
      );
      return {
        report: { ...base, state: SecretState.SECRET_STATE_CONFLICT, reason: 'Conflict', message: 'an unmanaged Secret has this name' },
        changed: false,
      };
    }
    if (outcome.state === 'failed') {
      return {
        report: { ...base, state: SecretState.SECRET_STATE_FAILED, reason: outcome.reason, message: outcome.message },
        changed: false,
      };
    }
    if (outcome.resourceVersion) this.written.set(key(target.namespace, target.name), outcome.resourceVersion);
    return { report: { ...base, state: SecretState.SECRET_STATE_APPLIED, reason: '' }, changed: outcome.changed };
  }

  /** Drift repair: a managed Secret deleted or edited by someone else is written again at once. */
  private watchSecrets(): void {
    const paths = this.opts.namespaces ? this.opts.namespaces.map((ns) => `/api/v1/namespaces/${ns}/secrets`) : ['/api/v1/secrets'];
    for (const path of paths) void this.watchPath(path);
  }

  private async watchPath(path: string): Promise<void> {
    const backoff = new ReconnectBackoff({ baseMs: 1_000, capMs: 30_000 });
    const query = `?watch=1&allowWatchBookmarks=true&labelSelector=${encodeURIComponent(`${MANAGED_BY}=${MANAGED_BY_SIGIL}`)}`;
    while (!this.stopped) {
      const ctl = new AbortController();
      this.kubeWatches.push(ctl);
      const started = Date.now();
      await this.kube.watch(`${path}${query}`, (phase, obj) => this.onSecretEvent(phase, obj), ctl.signal);
      this.kubeWatches.splice(this.kubeWatches.indexOf(ctl), 1);
      if (this.stopped) return;
      if (Date.now() - started > HEALTHY_STREAM_MS) backoff.reset();
      await sleep(backoff.next());
    }
  }

  private onSecretEvent(phase: string, obj: Secret): void {
    const k = key(obj.metadata?.namespace ?? '', obj.metadata?.name ?? '');
    const wanted = this.desired.get(k);
    if (!wanted || this.syncing) return;
    const drifted = phase === 'DELETED' || (phase === 'MODIFIED' && obj.metadata?.resourceVersion !== this.written.get(k));
    if (!drifted) return;
    this.metrics.repairs.inc();
    this.logger.info({ target: k, phase }, 'repairing a managed Secret changed outside Sigil');
    void this.apply(wanted, true).then((r) => {
      if (r.report.state !== SecretState.SECRET_STATE_APPLIED) {
        void unary((cb) => this.client!.reportStatus({ appliedGeneration: this.appliedGeneration, secrets: [r.report] }, cb)).catch(
          () => undefined,
        );
      }
    });
  }
}
