import type { Metadata } from '@grpc/grpc-js';

/**
 * Trailing metadata on a RESOURCE_EXHAUSTED/UNAVAILABLE answer: a window in milliseconds; the
 * client should retry at a uniformly random moment within it.
 */
export const RETRY_AFTER_METADATA = 'sigil-retry-after-ms';

/** The server's retry window from an error's metadata, if it sent one. */
export function retryAfterMs(metadata: Metadata | undefined): number | undefined {
  const raw = metadata?.get(RETRY_AFTER_METADATA)[0];
  const ms = typeof raw === 'string' ? Number(raw) : NaN;
  return Number.isFinite(ms) && ms >= 0 ? Math.min(ms, 5 * 60_000) : undefined;
}

/**
 * How an agent reconnects: "full jitter" exponential backoff — a uniformly random delay in
 * [0, min(cap, base·2^attempt)] — so that agents cut off together do not come back together.
 * A server-sent retry window replaces the exponential one for that attempt. reset() after a
 * connection that stayed healthy.
 */
export class ReconnectBackoff {
  private attempt = 0;

  constructor(private readonly opts: { baseMs?: number; capMs?: number; random?: () => number } = {}) {}

  /** The delay before the next attempt. */
  next(serverWindowMs?: number): number {
    const base = this.opts.baseMs ?? 500;
    const cap = this.opts.capMs ?? 30_000;
    const random = this.opts.random ?? Math.random;
    const window = serverWindowMs ?? Math.min(cap, base * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.floor(random() * window);
  }

  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}
