import { targetKey } from '@sigil/agent-sync';
import type { Logger } from '@sigil/logging';
import type { KubeClient } from './kube/kube-client.js';
import type { KubeReconciler } from './reconciler.js';
import { ManagedSecretWatch, type SecretRef } from './secret-watch.js';

/**
 * Drift repair's eyes: list-then-watch the managed Secrets (metadata only) in every namespace
 * served, and mark for re-checking every desired Secret that is missing or not as this agent
 * left it (a deletion, or an edit it did not make).
 */
export class DriftWatch {
  private readonly watches: ManagedSecretWatch[] = [];

  constructor(
    private readonly kube: KubeClient,
    private readonly namespaces: string[] | undefined,
    private readonly reconciler: KubeReconciler,
    private readonly logger: Logger,
  ) {}

  start(): void {
    const scopes: Array<{ ns: string | undefined; path: string }> = this.namespaces
      ? this.namespaces.map((ns) => ({ ns, path: `/api/v1/namespaces/${encodeURIComponent(ns)}/secrets` }))
      : [{ ns: undefined, path: '/api/v1/secrets' }];
    for (const { ns, path } of scopes) {
      const watch = new ManagedSecretWatch(
        this.kube,
        path,
        { listed: (items) => this.onRelist(ns, items), changed: (phase, ref) => this.onSecretEvent(phase, ref) },
        this.logger,
      );
      this.watches.push(watch);
      void watch.run();
    }
  }

  stop(): void {
    for (const w of this.watches) w.stop();
  }

  /** After a (re)list: every desired Secret in scope that is missing or not as this agent left it is re-checked. */
  private onRelist(namespace: string | undefined, items: SecretRef[]): void {
    const seen = new Map(items.map((i) => [targetKey(i.namespace, i.name), i.resourceVersion]));
    const written = this.reconciler.sink.written;
    for (const [k, s] of this.reconciler.desired) {
      if (namespace !== undefined && s.target!.namespace !== namespace) continue;
      const rv = seen.get(k);
      if (rv === undefined || rv !== written.get(k)) this.reconciler.markDirty(k);
    }
  }

  private onSecretEvent(phase: string, ref: SecretRef): void {
    const k = targetKey(ref.namespace, ref.name);
    if (!this.reconciler.desired.has(k)) return;
    // Our own writes come back with the resourceVersion we recorded (or, if the event wins the race
    // against recording it, are re-checked cheaply): anything else is someone else's change.
    if (phase === 'DELETED' || ref.resourceVersion !== this.reconciler.sink.written.get(k)) this.reconciler.markDirty(k);
  }
}
