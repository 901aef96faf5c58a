/**
 * Admission of new agent sessions (Sync, Enroll) after a start: a token bucket whose rate
 * starts at `startPerSecond` and doubles every `doublingMs`, until it is high enough not to
 * matter and admission stops limiting. 10,000 agents reconnecting at once to a fresh replica
 * are admitted over a few seconds instead of all at the same instant.
 *
 * Tuning (default 1,000/s doubling every 2 s: 2,900 admitted by 2 s, 8,700 by 4 s, unlimited
 * from 8.6 s): what admission spares is the work after the TLS handshake — the handshake itself
 * happens before any RPC and is not gated here — and that work is now batched (a cluster
 * lookup and a Hello read serve thousands of streams per statement, and an agent already at the
 * built generation is sent nothing). So the ramp only smooths the first seconds; it must never
 * be what makes 10,000 reconnects take longer than 30 s. The old 250/s doubling every 5 s
 * needed ~13 s of pure ramp for 10,000, plus the retry windows. Those turned away are told a
 * window to retry in — sized so the rejected crowd, spread uniformly over it, arrives at about
 * the admission rate — and each picks a random moment in it (see docs/agent-protocol.md).
 */
export class AdmissionRamp {
  private tokens: number;
  private at: number;
  private readonly startedAt: number;
  /** Sessions turned away in the current one-second window, and in the one before. */
  private rejected = { window: 0, current: 0, previous: 0 };

  constructor(
    private readonly startPerSecond: number,
    private readonly doublingMs = 2_000,
    private readonly unlimitedAbove = 20_000,
    now = Date.now(),
  ) {
    this.startedAt = now;
    this.at = now;
    this.tokens = startPerSecond;
  }

  /** The admission rate at `now`, or Infinity once the ramp is over. */
  rate(now = Date.now()): number {
    const r = this.startPerSecond * 2 ** ((now - this.startedAt) / this.doublingMs);
    return r >= this.unlimitedAbove ? Infinity : r;
  }

  /** 0 when admitted, else the window (ms) in which to retry at a uniformly random moment. */
  admit(now = Date.now()): number {
    const rate = this.rate(now);
    if (rate === Infinity) return 0;
    this.tokens = Math.min(rate, this.tokens + ((now - this.at) / 1000) * rate);
    this.at = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    const window = Math.floor(now / 1000);
    if (window !== this.rejected.window)
      this.rejected = { window, current: 0, previous: window === this.rejected.window + 1 ? this.rejected.current : 0 };
    this.rejected.current += 1;
    const crowd = Math.max(this.rejected.current, this.rejected.previous);
    return Math.min(30_000, Math.max(250, Math.ceil((crowd / rate) * 1000)));
  }
}
