import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { DeliveryMode, type DesiredSecret, type SecretStatus } from '@sigil/agent-protocol';
import { SecretSync, type AssembledState, type SyncOutcome } from '@sigil/agent-sync';
import type { Logger } from '@sigil/logging';
import type { KubeSecrets } from './kube-secrets.js';
import { DeliverySink } from './delivery-sink.js';
import { InjectionStore } from './inject/injection-store.js';
import { KubeSink } from './kube-sink.js';
import { countSecretFailures, type AgentMetrics } from './metrics.js';
import type { WorkloadRestarter } from './restarts.js';

export interface ReconcilerOptions {
  secrets: KubeSecrets;
  namespaces: string[] | undefined;
  clusterId: () => string;
  deliveryKeyPem: () => string;
  logger: Logger;
  metrics: AgentMetrics;
  restarter: WorkloadRestarter | undefined;
  /** Whether the agent serves injection (--inject). */
  injecting: boolean;
  /** After each state applied (the injection cache saves what it needs). */
  applied?(state: AssembledState): void;
  /** Statuses found between states (a repair that failed, or recovered): sent at the acknowledged generation. */
  report(statuses: SecretStatus[]): void;
  /**
   * Tests only (SIGIL_AGENT_TEST_SYNC_GATE): while this file exists, a sync waits after writing
   * and before reporting, which holds open the window in which Secret events arrive mid-sync.
   * A generation in the file holds only states of that generation or newer, so a sync already
   * running when a test creates the file (of an older state) is not the one held.
   */
  syncGate?: string;
}

/**
 * The Kubernetes side of the agent: applies each desired state with the shared sync logic
 * (@sigil/agent-sync SecretSync over KubeSink) and repairs drift, one thing at a time in one
 * worker. A Secret event that arrives during a sync only marks its target dirty; dirty targets
 * are re-checked right after the sync, so repair does not depend on when the event arrives.
 */
export class KubeReconciler {
  readonly sink: KubeSink;
  /** Inject-mode secrets: envelopes held for the injection service, never written to Kubernetes. */
  readonly injection = new InjectionStore();
  private readonly sync: SecretSync;
  private working: Promise<void> | undefined;
  private nextState: { state: AssembledState; done: (r: Promise<SecretStatus[]>) => void } | undefined;
  /** Targets a Secret event or a relist says may have drifted; re-checked by the worker. */
  private readonly dirty = new Set<string>();
  private stopped = false;
  /** The generation of the state being applied (the test gate compares it). */
  private applying = 0n;

  constructor(private readonly opts: ReconcilerOptions) {
    this.sink = new KubeSink(opts.secrets, opts.namespaces, opts.clusterId, opts.logger, (k) => this.dirty.delete(k));
    this.sync = new SecretSync({
      sink: new DeliverySink(this.sink, this.injection, opts.injecting),
      // The key is asked for when a state first needs it: the identity is loaded by then.
      get deliveryKey() {
        return opts.deliveryKeyPem();
      },
      afterWrites: () => this.holdForTests(),
      logger: opts.logger,
    });
  }

  /** The desired entry of each target (`namespace/name`) as of the last state. */
  get desired() {
    return this.sync.desired;
  }

  /** Decrypts one held secret now (injection); the caller zeroes the buffers. */
  open(s: DesiredSecret): Map<string, Buffer> {
    return this.sync.open(s);
  }

  /** The session's reconcile: applies one state in the worker; resolves with its statuses. */
  reconcile(state: AssembledState): Promise<SecretStatus[]> {
    return new Promise<SecretStatus[]>((resolve, reject) => {
      this.nextState = { state, done: (r) => void r.then(resolve, reject) };
      this.kick();
    });
  }

  /** A target to re-check once the worker is free (never dropped, however busy it is). */
  markDirty(k: string): void {
    this.dirty.add(k);
    this.kick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.working?.catch(() => undefined);
  }

  private kick(): void {
    if (this.working || this.stopped) return;
    this.working = (async () => {
      while (!this.stopped && (this.nextState || this.dirty.size > 0)) {
        const next = this.nextState;
        if (next) {
          this.nextState = undefined;
          const run = this.apply(next.state);
          next.done(run.then((o) => o.statuses));
          // Restarts after the acknowledgement, as before: they do not hold up the report.
          const outcome = await run.catch(() => undefined);
          if (outcome && this.opts.restarter) await this.restart(outcome.changed);
          continue;
        }
        const targets = [...this.dirty];
        this.dirty.clear();
        for (const k of targets) await this.repair(k);
      }
    })().finally(() => {
      this.working = undefined;
      // Something may have arrived between the loop's last check and here.
      if (this.nextState || this.dirty.size > 0) this.kick();
    });
  }

  private async apply(state: AssembledState): Promise<SyncOutcome> {
    const { metrics, logger } = this.opts;
    try {
      this.applying = state.generation;
      const outcome = await this.sync.apply(state);
      metrics.syncs.inc({ outcome: 'ok' });
      countSecretFailures(metrics.secretFailures, outcome.statuses);
      metrics.generation.set(Number(state.generation));
      metrics.managed.set(this.sync.desired.size);
      this.opts.applied?.(state);
      logger.info(
        {
          generation: state.generation.toString(),
          base: state.baseGeneration.toString(),
          secrets: this.sync.desired.size,
          written: outcome.changed.length,
          deleted: outcome.deleted.length,
        },
        'desired state applied',
      );
      return outcome;
    } catch (err) {
      metrics.syncs.inc({ outcome: 'error' });
      throw err;
    }
  }

  private async restart(written: DesiredSecret[]): Promise<void> {
    const byNamespace = new Map<string, string[]>();
    const injected = new Set<string>(); // `namespace/app` of each consumer namespace
    for (const s of written) {
      if (s.deliveryMode === DeliveryMode.DELIVERY_MODE_INJECT) {
        for (const c of s.consumers) injected.add(`${c.namespace}/${s.app}`);
        continue;
      }
      byNamespace.set(s.target!.namespace, [...(byNamespace.get(s.target!.namespace) ?? []), s.target!.name]);
    }
    for (const [ns, names] of byNamespace) await this.opts.restarter!.secretsChanged(ns, names);
    for (const k of injected) {
      const [ns, app] = k.split('/') as [string, string];
      await this.opts.restarter!.injectedAppChanged(ns, app);
    }
  }

  private async repair(k: string): Promise<void> {
    const r = await this.sync.repair(k);
    if (!r) return;
    if (r.changed) {
      this.opts.metrics.repairs.inc();
      this.opts.logger.info({ target: k }, 'repaired a managed Secret changed outside Sigil');
    }
    countSecretFailures(this.opts.metrics.secretFailures, [r.status]);
    if (r.report) this.opts.report([r.status]);
  }

  /** See ReconcilerOptions.syncGate. */
  private async holdForTests(): Promise<void> {
    const gate = this.opts.syncGate;
    if (!gate) return;
    const held = () => {
      try {
        const from = readFileSync(gate, 'utf8').trim();
        return from === '' || this.applying >= BigInt(from);
      } catch {
        return false; // gone
      }
    };
    while (!this.stopped && held()) await sleep(50);
  }
}
