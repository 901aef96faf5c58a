/**
 * Per-token token bucket, in process memory: `burst` requests at once, refilled at `perSecond`.
 * With several replicas each enforces its own share; a shared (Redis) limiter can replace this
 * behind the same interface.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
  ) {}

  /** Returns 0 when allowed, else the seconds to wait. */
  take(key: string, now = Date.now()): number {
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.perSecond);
    b.at = now;
    this.buckets.set(key, b);
    if (this.buckets.size > 10_000) this.evictFull(now);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - b.tokens) / this.perSecond);
  }

  /** Whether `key` has used up its bucket (without taking from it). */
  blocked(key: string, now = Date.now()): boolean {
    const b = this.buckets.get(key);
    return b !== undefined && Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.perSecond) < 1;
  }

  private evictFull(now: number): void {
    for (const [k, b] of this.buckets) if (b.tokens + ((now - b.at) / 1000) * this.perSecond >= this.burst) this.buckets.delete(k);
  }
}
