import type { HsmService } from '../hsm/hsm.service.js';

/** Ticket keys change this often; a ticket from an earlier epoch gets a full handshake. */
export const TICKET_EPOCH_MS = 12 * 3600_000;

/**
 * TLS session-ticket keys for the agent listener, derived per epoch from a key in the HSM, so
 * every replica and every restart uses the same ones and an agent's ticket resumes its session
 * wherever it reconnects. The derived keys live in memory only (as Node's own random ticket
 * keys would) and open the tickets of one epoch; the HSM key never leaves the HSM. Anyone who can
 * run code on a replica can also ask the HSM for other epochs' keys (docs/security.md).
 */
export class SessionTickets {
  private timer: NodeJS.Timeout | undefined;
  private epoch = -1;
  private stopped = false;

  constructor(
    private readonly hsm: Pick<HsmService, 'ensureTicketKey' | 'sessionTicketKeys'>,
    /** Runs `fn` under a lock all replicas share, so the first start creates one key, not two. */
    private readonly underLock: (fn: () => Promise<unknown>) => Promise<unknown>,
    private readonly apply: (keys: Buffer) => void,
    private readonly onError: (err: unknown) => void,
    private readonly now: () => number = Date.now,
  ) {}

  async start(): Promise<void> {
    await this.underLock(() => this.hsm.ensureTicketKey());
    await this.refresh();
    this.schedule(this.untilNextEpoch());
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private async refresh(): Promise<void> {
    const epoch = Math.floor(this.now() / TICKET_EPOCH_MS);
    if (epoch === this.epoch) return;
    this.apply(await this.hsm.sessionTicketKeys(epoch));
    this.epoch = epoch;
  }

  /** At the next boundary (plus a moment, so clocks a little apart still agree most of the time). */
  private untilNextEpoch(): number {
    return (Math.floor(this.now() / TICKET_EPOCH_MS) + 1) * TICKET_EPOCH_MS - this.now() + 1_000;
  }

  /** One timer at a time; a failed refresh tries again every minute until it succeeds (the old keys keep working meanwhile). */
  private schedule(inMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.refresh().then(
        () => this.schedule(this.untilNextEpoch()),
        (err: unknown) => {
          this.onError(err);
          this.schedule(60_000);
        },
      );
    }, inMs).unref();
  }
}
