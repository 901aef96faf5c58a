import { Inject, Injectable, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { DeliveryError, DeliveryErrorCode } from '../delivery/delivery.errors.js';
import { ClusterEvents, type ClusterEvent } from '../events/cluster-events.js';

/** Long-polls (`GET …/publication?wait=`) one API token may hold open at once, per replica. */
export const WAITERS_PER_TOKEN = 10;
/** Long-polls one replica holds open at once, whoever asks. */
export const WAITERS_PER_REPLICA = 2_000;
/** Retry-After for a refused long-poll. */
const REFUSED_RETRY_AFTER_S = 5;
/** After an event, gather the rest of its burst before re-reading: many reports, one read. */
const DEBOUNCE_MS = 100;
/** Pub/sub is fire-and-forget: a waiter re-reads this often even without an event. */
export const SAFETY_RECHECK_MS = 10_000;

interface Waiter {
  appId: string;
  clusterIds: string[];
  wake(): void;
}

/**
 * Long-polling publication status costs nothing while nothing happens. Every waiter hangs off
 * one listener on the cluster events (one Redis subscription per replica, shared), keyed by the
 * clusters and the app it is waiting on; an event for one of them wakes it (debounced) to
 * re-read. Agents' status reports, builds, delivery failures, cluster changes and publish /
 * unpublish all publish such events, from whichever replica they happen on.
 */
@Injectable()
export class PublicationWaiters implements OnModuleInit, OnModuleDestroy {
  private readonly byCluster = new Map<string, Set<Waiter>>();
  private readonly byApp = new Map<string, Set<Waiter>>();
  private readonly perToken = new Map<string, number>();
  private total = 0;
  private unsubscribe: (() => void) | undefined;

  constructor(@Inject(ClusterEvents) private readonly events: ClusterEvents) {}

  onModuleInit(): void {
    this.unsubscribe = this.events.on((e) => this.onEvent(e));
  }

  onModuleDestroy(): void {
    this.unsubscribe?.();
  }

  /**
   * Takes one of the token's waiting slots, or refuses with 429 `too_many_waiters`. The returned
   * function gives it back (idempotent); callers call it in `finally`.
   */
  admit(tokenId: string): () => void {
    const mine = this.perToken.get(tokenId) ?? 0;
    if (mine >= WAITERS_PER_TOKEN) {
      throw new DeliveryError(
        DeliveryErrorCode.TooManyWaiters,
        `at most ${WAITERS_PER_TOKEN} waiting requests per API token; retry once one has answered`,
        { retryAfterSeconds: REFUSED_RETRY_AFTER_S },
      );
    }
    if (this.total >= WAITERS_PER_REPLICA) {
      throw new DeliveryError(DeliveryErrorCode.TooManyWaiters, 'too many waiting requests on this server; retry shortly', {
        retryAfterSeconds: REFUSED_RETRY_AFTER_S,
      });
    }
    this.perToken.set(tokenId, mine + 1);
    this.total++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total--;
      const left = (this.perToken.get(tokenId) ?? 1) - 1;
      if (left > 0) this.perToken.set(tokenId, left);
      else this.perToken.delete(tokenId);
    };
  }

  /** Waiting requests now held (metrics, tests). */
  get waiting(): number {
    return this.total;
  }

  /**
   * Resolves once an event concerns `appId` or one of `clusterIds` (and the burst it came in
   * has passed), after `timeoutMs`, or when `signal` aborts (the client went away).
   */
  changed(appId: string, clusterIds: string[], timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      let debounce: NodeJS.Timeout | undefined;
      const done = () => {
        clearTimeout(timer);
        clearTimeout(debounce);
        signal?.removeEventListener('abort', done);
        this.remove(waiter);
        resolve();
      };
      const waiter: Waiter = { appId, clusterIds, wake: () => (debounce ??= setTimeout(done, DEBOUNCE_MS)) };
      const timer = setTimeout(done, Math.max(0, timeoutMs));
      if (signal?.aborted) return done();
      signal?.addEventListener('abort', done, { once: true });
      this.add(waiter);
    });
  }

  private onEvent(e: ClusterEvent): void {
    if (e.type === 'placement-changed') {
      for (const w of this.byApp.get(e.appId) ?? []) w.wake();
      return;
    }
    for (const id of e.type === 'access-changed' ? [e.clusterId] : e.clusterIds) for (const w of this.byCluster.get(id) ?? []) w.wake();
  }

  private add(w: Waiter): void {
    index(this.byApp, w.appId).add(w);
    for (const id of w.clusterIds) index(this.byCluster, id).add(w);
  }

  private remove(w: Waiter): void {
    unindex(this.byApp, w.appId, w);
    for (const id of w.clusterIds) unindex(this.byCluster, id, w);
  }
}

function index(map: Map<string, Set<Waiter>>, key: string): Set<Waiter> {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  return set;
}

function unindex(map: Map<string, Set<Waiter>>, key: string, w: Waiter): void {
  const set = map.get(key);
  if (!set) return;
  set.delete(w);
  if (set.size === 0) map.delete(key);
}
