import { describe, expect, it } from '@jest/globals';
import { Metadata } from '@grpc/grpc-js';
import { ReconnectBackoff, RETRY_AFTER_METADATA, retryAfterMs } from './backoff.js';

describe('ReconnectBackoff', () => {
  it('grows the jitter window exponentially up to the cap', () => {
    const b = new ReconnectBackoff({ baseMs: 100, capMs: 1000, random: () => 0.999999 });
    expect([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([99, 199, 399, 799, 999, 999]);
  });

  it('spreads delays uniformly over the window (no two agents pick alike)', () => {
    const delays = Array.from({ length: 2000 }, () => new ReconnectBackoff({ baseMs: 1000 }).next());
    const buckets = [0, 0, 0, 0];
    for (const d of delays) buckets[Math.floor(d / 250)]! += 1;
    for (const n of buckets) expect(n).toBeGreaterThan(350); // 500 expected per quarter
    expect(new Set(delays).size).toBeGreaterThan(400);
  });

  it('uses the server window for that attempt and starts over after reset()', () => {
    const b = new ReconnectBackoff({ baseMs: 100, random: () => 0.5 });
    b.next();
    b.next();
    expect(b.next(10_000)).toBe(5000);
    expect(b.attempts).toBe(3);
    b.reset();
    expect(b.next()).toBe(50);
  });
});

describe('retryAfterMs', () => {
  it('reads the window from trailing metadata and ignores garbage', () => {
    const m = new Metadata();
    expect(retryAfterMs(m)).toBeUndefined();
    m.set(RETRY_AFTER_METADATA, '1500');
    expect(retryAfterMs(m)).toBe(1500);
    m.set(RETRY_AFTER_METADATA, 'soon');
    expect(retryAfterMs(m)).toBeUndefined();
    m.set(RETRY_AFTER_METADATA, '99999999');
    expect(retryAfterMs(m)).toBe(300_000);
  });
});
