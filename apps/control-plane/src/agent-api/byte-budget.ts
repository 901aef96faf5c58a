/**
 * The bytes of desired states this replica holds at once across all streams: read from
 * PostgreSQL and not yet written out by gRPC. Reads reserve before they run, parts give their
 * bytes back when gRPC has written them (or their stream ends), so however many agents are slow
 * or stuck, state memory stays under the cap; waiters are served in order.
 */
export class ByteBudget {
  private used = 0;
  private readonly waiters: Array<{ bytes: number; resolve: () => void }> = [];

  constructor(readonly capacity: number) {}

  get available(): number {
    return this.capacity - this.used;
  }

  get inUse(): number {
    return this.used;
  }

  /** Takes up to `bytes` at once if nothing is waiting; returns what it took (possibly 0). */
  tryTake(bytes: number): number {
    if (this.waiters.length > 0) return 0;
    const n = Math.max(0, Math.min(bytes, this.available));
    this.used += n;
    return n;
  }

  /** Waits until `bytes` (at most the capacity) can be taken, then takes them. */
  async take(bytes: number): Promise<number> {
    const n = Math.min(bytes, this.capacity);
    if (this.waiters.length === 0 && n <= this.available) {
      this.used += n;
      return n;
    }
    await new Promise<void>((resolve) => this.waiters.push({ bytes: n, resolve }));
    return n;
  }

  release(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
    while (this.waiters.length > 0 && this.waiters[0]!.bytes <= this.available) {
      const w = this.waiters.shift()!;
      this.used += w.bytes;
      w.resolve();
    }
  }
}
