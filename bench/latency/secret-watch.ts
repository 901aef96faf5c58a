import type { KubeConfig, V1Secret, Watch } from '@kubernetes/client-node';

/**
 * One Kubernetes watch on the Secrets of a namespace (@kubernetes/client-node's Watch, opened
 * once, resumed from its last resourceVersion when the client's inactivity timeout closes it):
 * resolves a waiter the moment an event shows a Secret holding the expected value under `key`.
 */
export class SecretWatch {
  private readonly waiters = new Map<string, (at: number) => void>();
  private readonly latest = new Map<string, string | undefined>();
  private resourceVersion: string | undefined;
  private request: AbortController | undefined;
  private closed = false;
  private failure: Error | undefined;
  private readonly onFailure = new Set<(err: Error) => void>();

  private constructor(
    private readonly watch: Watch,
    private readonly namespace: string,
    private readonly key: string,
  ) {}

  static async open(kc: KubeConfig, namespace: string, key: string): Promise<SecretWatch> {
    const k8s = await import('@kubernetes/client-node');
    const w = new SecretWatch(new k8s.Watch(kc), namespace, key);
    await w.run();
    return w;
  }

  private async run(): Promise<void> {
    try {
      this.request = await this.watch.watch(
        `/api/v1/namespaces/${this.namespace}/secrets`,
        { allowWatchBookmarks: true, resourceVersion: this.resourceVersion },
        (type: string, secret: V1Secret) => this.onEvent(type, secret, performance.now()),
        (err: unknown) => this.ended(err),
      );
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private onEvent(type: string, secret: V1Secret, at: number): void {
    this.resourceVersion = secret.metadata?.resourceVersion ?? this.resourceVersion;
    if (type !== 'ADDED' && type !== 'MODIFIED') return;
    const name = secret.metadata?.name ?? '';
    const raw = secret.data?.[this.key];
    const value = raw === undefined ? undefined : Buffer.from(raw, 'base64').toString('utf8');
    this.latest.set(name, value);
    const k = `${name}\0${value}`;
    const resolve = this.waiters.get(k);
    if (resolve) {
      this.waiters.delete(k);
      resolve(at);
    }
  }

  /**
   * The client closes a watch idle for 30 s, the server one older than its timeout: either way,
   * resume from the last resourceVersion seen. Any other end fails the waiters.
   */
  private ended(err: unknown): void {
    if (this.closed) return;
    if (err === null || err === undefined || (err instanceof Error && err.name === 'TimeoutError')) void this.run();
    else this.fail(err instanceof Error ? err : new Error(`the Kubernetes watch ended (${JSON.stringify(err)})`));
  }

  private fail(err: Error): void {
    if (this.closed || this.failure) return;
    this.failure = err;
    for (const f of this.onFailure) f(err);
  }

  /** Registers interest in `name` holding `value` (before causing it); resolves with performance.now() of the event. */
  expect(name: string, value: string, timeoutMs: number): Promise<number> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.latest.get(name) === value) return Promise.resolve(performance.now());
    const k = `${name}\0${value}`;
    const seen = new Promise<number>((resolve, reject) => {
      const onFail = (err: Error) => done(() => reject(err));
      const timer = setTimeout(
        () => done(() => reject(new Error(`Secret ${name} did not show the new value within ${timeoutMs} ms`))),
        timeoutMs,
      ).unref();
      const done = (settle: () => void) => {
        clearTimeout(timer);
        this.waiters.delete(k);
        this.onFailure.delete(onFail);
        settle();
      };
      this.onFailure.add(onFail);
      this.waiters.set(k, (at) => done(() => resolve(at)));
    });
    // A caller that fails before awaiting (its request failed) must not leave an unhandled rejection.
    seen.catch(() => undefined);
    return seen;
  }

  value(name: string): string | undefined {
    return this.latest.get(name);
  }

  close(): void {
    this.closed = true;
    this.request?.abort();
  }
}
