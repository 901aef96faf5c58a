import { createHash } from 'node:crypto';
import type { Consumer, DesiredSecret } from '@sigil/agent-protocol';
import { targetKey } from '@sigil/agent-sync';

/**
 * The envelopes of every inject-mode secret of the current desired state, in memory only. They
 * are opened per request (InjectionService); nothing here is a value. Waiters (sidecars' long
 * polls) are woken whenever what an app holds changes.
 */
export class InjectionStore {
  private readonly held = new Map<string, DesiredSecret>();
  private readonly waiters = new Set<() => void>();

  /** Holds (or replaces) one entry; returns whether anything changed. */
  hold(s: DesiredSecret): boolean {
    const k = targetKey(s.target!.namespace, s.target!.name);
    const before = this.held.get(k);
    this.held.set(k, s);
    const changed = !before || before.version !== s.version || before.generation !== s.generation || !sameConsumers(before, s);
    if (changed) this.wake();
    return changed;
  }

  has(k: string): boolean {
    return this.held.has(k);
  }

  /** Forgets everything (the cluster was disabled): every later fetch is refused. */
  clear(): void {
    if (this.held.size === 0) return;
    this.held.clear();
    this.wake();
  }

  drop(k: string): boolean {
    const dropped = this.held.delete(k);
    if (dropped) this.wake();
    return dropped;
  }

  /** Every entry held (the injection cache saves them). */
  entries(): DesiredSecret[] {
    return [...this.held.values()];
  }

  targets(): Array<{ namespace: string; name: string }> {
    return [...this.held.values()].map((s) => ({ namespace: s.target!.namespace, name: s.target!.name }));
  }

  /** Every entry of apps named `app` (one per project that publishes such an app here). */
  forApp(app: string): DesiredSecret[] {
    return [...this.held.values()].filter((s) => s.app === app).sort((a, b) => a.secretId.localeCompare(b.secretId));
  }

  /** Resolves at the next change, or after `ms`; returns false on timeout. */
  waitForChange(ms: number, signal?: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (changed: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        signal?.removeEventListener('abort', abort);
        resolve(changed);
      };
      const wake = () => done(true);
      const abort = () => done(false);
      const timer = setTimeout(() => done(false), ms);
      this.waiters.add(wake);
      signal?.addEventListener('abort', abort, { once: true });
    });
  }

  get size(): number {
    return this.held.size;
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}

const consumerList = (s: DesiredSecret) =>
  s.consumers
    .map((c) => `${c.namespace}/${c.serviceAccount}`)
    .sort()
    .join(',');
const sameConsumers = (a: DesiredSecret, b: DesiredSecret) => consumerList(a) === consumerList(b);

/** Whether pods of `namespace` running as `serviceAccount` are among the entry's consumers. */
export function isConsumer(consumers: readonly Consumer[], namespace: string, serviceAccount: string): boolean {
  return consumers.some((c) => c.namespace === namespace && (c.serviceAccount === '*' || c.serviceAccount === serviceAccount));
}

/**
 * A stamp of what one pod receives: it changes whenever one of `entries` changes version,
 * generation or consumers (the sidecar's long poll), and with nothing else.
 */
export function stampOf(entries: readonly DesiredSecret[]): string {
  const h = createHash('sha256');
  for (const s of entries) h.update(`${s.projectId}/${s.secretId}@${s.version}#${s.generation};${consumerList(s)}\n`);
  return h.digest('base64url').slice(0, 22);
}
