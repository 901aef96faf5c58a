import { existsSync } from 'node:fs';
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
import { Counter, Gauge, type Registry } from './metrics.js';
import { byTarget, resolveContested, sourceOf, targetKey as key } from './ownership.js';
import type { WorkloadRestarter } from './restarts.js';
import { ManagedSecretWatch, type SecretRef } from './secret-watch.js';

export interface AgentOptions {
  address: string;
  caPem: string;
  cluster: string;
  credential: Credential | undefined;
  /** Namespaces the agent serves; undefined: cluster-wide. */
  namespaces: string[] | undefined;
  version: string;
  /**
   * Tests only (SIGIL_AGENT_TEST_SYNC_GATE): while this file exists, a sync waits after writing
   * and before reporting, which holds open the window in which Secret events arrive mid-sync.
   */
  syncGate?: string;
}

/** A stream that stayed up this long counts as healthy: the next failure starts backoff from scratch. */
const HEALTHY_STREAM_MS = 30_000;

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
  /** The one worker that syncs and repairs, one thing at a time; undefined while idle. */
  private working: Promise<void> | undefined;
  private syncRequested = false;
  /** Targets a Secret event or a relist says may have drifted; re-checked by the worker. */
  private readonly dirty = new Set<string>();
  private renewalTimer: NodeJS.Timeout | undefined;
  private readonly kubeWatches: ManagedSecretWatch[] = [];
  /** The last complete desired state (encrypted), kept to repair drift without asking again. */
  private desired = new Map<string, DesiredSecret>();
  /** Every owner (`sigil.dev/source`) the last complete desired state names. */
  private wantedSources = new Set<string>();
  private clusterKeys = new Map<number, Buffer>();
  /** resourceVersion of each Secret as this agent last wrote it or verified its data. */
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
    this.secrets = new KubeSecrets(kube, opts.namespaces);
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
    for (const w of this.kubeWatches) w.stop();
    await this.working?.catch(() => undefined);
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
    this.syncRequested = true;
    this.kick();
  }

  /** A target to re-check once the worker is free (never dropped, however busy it is). */
  private markDirty(k: string): void {
    this.dirty.add(k);
    this.kick();
  }

  /**
   * Runs syncs and drift repairs one at a time, never overlapping: events that arrive during a
   * sync only mark their target dirty, and the dirty targets are re-checked right after it.
   */
  private kick(): void {
    if (this.working || this.stopped) return;
    this.working = (async () => {
      while (!this.stopped && (this.syncRequested || this.dirty.size > 0)) {
        if (this.syncRequested) {
          this.syncRequested = false;
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
          continue;
        }
        const targets = [...this.dirty];
        this.dirty.clear();
        for (const k of targets) await this.repair(k);
      }
    })().finally(() => {
      this.working = undefined;
      // Something may have arrived between the loop's last check and here.
      if (this.syncRequested || this.dirty.size > 0) this.kick();
    });
  }

  private async sync(): Promise<void> {
    const state = await fetchDesiredState(this.client!);
    this.clusterKeys = new Map(
      state.clusterKeyEnvelopes.map((e) => {
        const k = openClusterKeyEnvelope(this.identity!.deliveryPrivateKeyPem, e);
        return [k.version, k.key] as const;
      }),
    );
    const statuses: SecretStatus[] = [];
    const targets = byTarget(state.secrets);
    this.wantedSources = new Set(state.secrets.map(sourceOf));
    const desired = await this.admissible(targets, statuses);
    this.desired = desired;
    // Anything applied below is checked now; what arrives from here on is re-checked after the sync.
    for (const k of desired.keys()) this.dirty.delete(k);
    const changed = new Map<string, string[]>();
    for (const s of desired.values()) {
      const status = await this.apply(s);
      statuses.push(status.report);
      if (status.changed) changed.set(s.target!.namespace, [...(changed.get(s.target!.namespace) ?? []), s.target!.name]);
    }
    await this.holdForTests();
    // Delete what this agent manages and nobody wants any more (it is only ever told the complete
    // state); a target the state names, even one refused as contested, is not deleted.
    for (const m of await this.secrets.listManaged(this.opts.namespaces)) {
      if (targets.has(key(m.namespace, m.name))) continue;
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

  /**
   * The entries this agent may write, one per target. Refused, and reported: a target outside the
   * namespaces it serves (`NamespaceNotServed`, whatever RBAC would allow), and every entry of a
   * target named more than once except the one that already owns the Secret (`Conflict`).
   */
  private async admissible(targets: Map<string, DesiredSecret[]>, statuses: SecretStatus[]): Promise<Map<string, DesiredSecret>> {
    const desired = new Map<string, DesiredSecret>();
    for (const [k, entries] of targets) {
      const { namespace, name } = entries[0]!.target!;
      if (!this.secrets.serves(namespace)) {
        this.logger.warn({ target: k }, 'a desired Secret is outside the namespaces this agent serves; not written');
        for (const e of entries)
          statuses.push(
            failedStatus(e, SecretState.SECRET_STATE_FAILED, 'NamespaceNotServed', `this agent does not serve namespace ${namespace}`),
          );
        continue;
      }
      if (entries.length === 1) {
        desired.set(k, entries[0]!);
        continue;
      }
      let owner: string | undefined;
      try {
        owner = await this.secrets.owner(namespace, name);
      } catch {
        owner = undefined; // unknown: refuse them all this time
      }
      const { kept, refused } = resolveContested(entries, owner);
      this.logger.warn({ target: k, entries: entries.length, kept: kept !== undefined }, 'several desired Secrets name one target');
      for (const e of refused)
        statuses.push(failedStatus(e, SecretState.SECRET_STATE_CONFLICT, 'Conflict', 'another Sigil secret targets the same Secret'));
      if (kept) desired.set(k, kept);
    }
    return desired;
  }

  /** See AgentOptions.syncGate. */
  private async holdForTests(): Promise<void> {
    while (this.opts.syncGate && existsSync(this.opts.syncGate) && !this.stopped) await sleep(50);
  }

  /**
   * Writes one Secret; the values exist in memory only inside `open()` → compare/write → zero. It
   * is taken as unchanged without decrypting only at a resourceVersion this agent wrote or verified.
   */
  private async apply(s: DesiredSecret): Promise<{ report: SecretStatus; changed: boolean }> {
    const target = s.target!;
    const k = key(target.namespace, target.name);
    const toWrite: SecretToWrite = {
      namespace: target.namespace,
      name: target.name,
      type: s.type,
      app: s.app,
      source: sourceOf(s),
      clusterId: this.identity!.clusterId,
      ownerRetired: (owner) => !this.wantedSources.has(owner),
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
      outcome = await this.secrets.write(toWrite, this.written.get(k));
    } catch (err) {
      this.logger.warn({ target: k, error: (err as Error).name }, 'could not open or write a Secret');
      return { report: { ...base, state: SecretState.SECRET_STATE_FAILED, reason: 'DecryptFailed' }, changed: false };
    }
    if (outcome.state === 'conflict') {
      this.written.delete(k);
      const message = outcome.holder === 'unmanaged' ? 'an unmanaged Secret has this name' : 'another Sigil secret owns this Secret';
      this.logger.warn({ target: k, holder: outcome.holder }, 'a Secret with this name is not this source’s; left alone');
      return { report: { ...base, state: SecretState.SECRET_STATE_CONFLICT, reason: 'Conflict', message }, changed: false };
    }
    if (outcome.state === 'failed') {
      return {
        report: { ...base, state: SecretState.SECRET_STATE_FAILED, reason: outcome.reason, message: outcome.message },
        changed: false,
      };
    }
    if (outcome.resourceVersion) this.written.set(k, outcome.resourceVersion);
    return { report: { ...base, state: SecretState.SECRET_STATE_APPLIED, reason: '' }, changed: outcome.changed };
  }

  /** Re-checks one target against the desired state; writes it back if it drifted. */
  private async repair(k: string): Promise<void> {
    const wanted = this.desired.get(k);
    if (!wanted) return;
    const r = await this.apply(wanted);
    if (r.changed) {
      this.metrics.repairs.inc();
      this.logger.info({ target: k }, 'repaired a managed Secret changed outside Sigil');
    }
    if (r.report.state !== SecretState.SECRET_STATE_APPLIED) {
      await unary((cb) =>
        this.client!.reportStatus(
          { appliedGeneration: this.appliedGeneration, secrets: [r.report] },
          new Metadata(),
          { deadline: Date.now() + 30_000 },
          cb,
        ),
      ).catch(() => undefined);
    }
  }

  /** Drift repair: list-then-watch the managed Secrets; a deletion or an edit this agent did not make is written back. */
  private watchSecrets(): void {
    const scopes: Array<{ ns: string | undefined; path: string }> = this.opts.namespaces
      ? this.opts.namespaces.map((ns) => ({ ns, path: `/api/v1/namespaces/${encodeURIComponent(ns)}/secrets` }))
      : [{ ns: undefined, path: '/api/v1/secrets' }];
    for (const { ns, path } of scopes) {
      const watch = new ManagedSecretWatch(
        this.kube,
        path,
        { listed: (items) => this.onRelist(ns, items), changed: (phase, ref) => this.onSecretEvent(phase, ref) },
        this.logger,
      );
      this.kubeWatches.push(watch);
      void watch.run();
    }
  }

  /** After a (re)list: every desired Secret in scope that is missing or not as this agent left it is re-checked. */
  private onRelist(namespace: string | undefined, items: SecretRef[]): void {
    const seen = new Map(items.map((i) => [key(i.namespace, i.name), i.resourceVersion]));
    for (const [k, s] of this.desired) {
      if (namespace !== undefined && s.target!.namespace !== namespace) continue;
      const rv = seen.get(k);
      if (rv === undefined || rv !== this.written.get(k)) this.markDirty(k);
    }
  }

  private onSecretEvent(phase: string, ref: SecretRef): void {
    const k = key(ref.namespace, ref.name);
    if (!this.desired.has(k)) return;
    // Our own writes come back with the resourceVersion we recorded (or, if the event wins the race
    // against recording it, are re-checked cheaply): anything else is someone else's change.
    if (phase === 'DELETED' || ref.resourceVersion !== this.written.get(k)) this.markDirty(k);
  }
}

const failedStatus = (s: DesiredSecret, state: SecretState, reason: string, message: string): SecretStatus => ({
  target: s.target,
  secretId: s.secretId,
  version: s.version,
  generation: s.generation,
  state,
  reason,
  message,
});
