import { setTimeout as sleep } from 'node:timers/promises';
import { ReconnectBackoff } from '@sigil/agent-protocol';
import type { Logger } from '@sigil/logging';
import { KubeError, type KubeClient } from './kube/kube-client.js';
import type { List, ObjectMeta } from './kube/types.js';
import { MANAGED_BY, MANAGED_BY_SIGIL } from './labels.js';

/** A managed Secret as the watch sees it: metadata only, never its data. */
export interface SecretRef {
  namespace: string;
  name: string;
  resourceVersion: string | undefined;
}

export interface SecretWatchHandlers {
  /** After every (re)list: every managed Secret there is now, in the watched scope. */
  listed(items: SecretRef[]): void;
  /** ADDED, MODIFIED or DELETED, in order, from the list's resourceVersion on. */
  changed(phase: string, ref: SecretRef): void;
}

// Metadata only (PartialObjectMetadata): the watch never needs values, so it never carries them
// into the agent's memory. A server that cannot do this answers with whole objects instead.
const META_LIST = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json';
const META = 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json';
const HEALTHY_STREAM_MS = 30_000;

const refOf = (metadata: ObjectMeta | undefined): SecretRef => ({
  namespace: metadata?.namespace ?? '',
  name: metadata?.name ?? '',
  resourceVersion: metadata?.resourceVersion,
});

/**
 * List-then-watch of the Secrets labelled managed-by sigil under one API path (a namespace or the
 * whole cluster), the way an informer does it: the watch starts at the list's resourceVersion,
 * so nothing between the two is missed; and after any gap (the stream ends or fails, the server
 * says 410 Gone, a request fails) it lists again before watching again, so a change made during
 * the gap is seen in the new list.
 */
export class ManagedSecretWatch {
  private stopped = false;
  private ctl: AbortController | undefined;

  constructor(
    private readonly kube: KubeClient,
    private readonly path: string,
    private readonly handlers: SecretWatchHandlers,
    private readonly logger: Logger,
    /** Ask the server to end each watch after this long (tests shorten it to exercise relists). */
    private readonly watchTimeoutSeconds?: number,
  ) {}

  async run(): Promise<void> {
    const backoff = new ReconnectBackoff({ baseMs: 1_000, capMs: 30_000 });
    const selector = `labelSelector=${encodeURIComponent(`${MANAGED_BY}=${MANAGED_BY_SIGIL}`)}`;
    while (!this.stopped) {
      const started = Date.now();
      const ctl = new AbortController();
      this.ctl = ctl;
      try {
        const list = await this.kube.request<Partial<List<{ metadata?: ObjectMeta }>>>(
          'GET',
          `${this.path}?${selector}`,
          undefined,
          undefined,
          META_LIST,
        );
        if (this.stopped) return;
        // An empty PartialObjectMetadataList comes with `items: null`.
        this.handlers.listed((list.items ?? []).map((i) => refOf(i.metadata)));
        const from = list.metadata?.resourceVersion;
        const timeout = this.watchTimeoutSeconds ? `&timeoutSeconds=${this.watchTimeoutSeconds}` : '';
        await this.kube.watch(
          `${this.path}?watch=1&allowWatchBookmarks=true&${selector}${from ? `&resourceVersion=${encodeURIComponent(from)}` : ''}${timeout}`,
          (phase, obj) => {
            if (ctl.signal.aborted) return;
            // ERROR (410 Gone: the resourceVersion is too old, or any other): end this watch and relist.
            if (phase === 'ERROR') {
              this.logger.info({ path: this.path, code: (obj as { code?: number }).code }, 'Secret watch expired; listing again');
              ctl.abort();
              return;
            }
            if (phase === 'BOOKMARK') return;
            this.handlers.changed(phase, refOf((obj as { metadata?: ObjectMeta }).metadata));
          },
          ctl.signal,
          META,
        );
      } catch (err) {
        this.logger.warn(
          { path: this.path, code: err instanceof KubeError ? err.code : undefined, message: (err as Error).message },
          'cannot list managed Secrets',
        );
      }
      if (this.stopped) return;
      if (Date.now() - started > HEALTHY_STREAM_MS) backoff.reset();
      await sleep(backoff.next(), undefined, { ref: false });
    }
  }

  stop(): void {
    this.stopped = true;
    this.ctl?.abort();
  }
}
