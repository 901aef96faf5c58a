import { describe, expect, it } from '@jest/globals';
import { AdmissionRamp } from './admission.js';

describe('AdmissionRamp', () => {
  it('admits the start rate at once, then turns the crowd away with a window sized to it', () => {
    const ramp = new AdmissionRamp(100, 5_000, 20_000, 0);
    const waits = Array.from({ length: 1100 }, () => ramp.admit(0));
    expect(waits.filter((w) => w === 0)).toHaveLength(100);
    // 1,000 turned away at 100/s: the last of them is told to spread over about 10 s.
    expect(waits.at(-1)).toBe(10_000);
    expect(Math.min(...waits.filter((w) => w > 0))).toBe(250);
  });

  it('doubles the rate every period and stops limiting once it is high', () => {
    const ramp = new AdmissionRamp(250, 5_000, 20_000, 0);
    expect(ramp.rate(0)).toBe(250);
    expect(ramp.rate(5_000)).toBe(500);
    expect(ramp.rate(20_000)).toBe(4_000);
    expect(ramp.rate(32_000)).toBe(Infinity);
    expect(ramp.admit(32_000)).toBe(0);
  });

  it('lets 10,000 agents that retry within their windows in within 10 s at the defaults', () => {
    const ramp = new AdmissionRamp(1_000, undefined, 20_000, 0);
    const pending = Array.from({ length: 10_000 }, (_, i) => (i * 7919) % 1000); // all arrive in the first second
    let admittedBy = 0;
    let seed = 1;
    const random = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
    while (pending.length > 0) {
      pending.sort((a, b) => a - b);
      const t = pending.shift()!;
      const wait = ramp.admit(t);
      if (wait === 0) admittedBy = t;
      else pending.push(t + Math.floor(random() * wait) + 1);
    }
    expect(admittedBy).toBeLessThan(10_000);
  });
});
