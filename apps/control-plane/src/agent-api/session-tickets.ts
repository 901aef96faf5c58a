import type { HsmService } from '../hsm/hsm.service.js';

/** Ticket keys change this often; a ticket from an earlier epoch gets a full handshake. */
export const TICKET_EPOCH_MS = 12 * 3600_000;

/**
 * TLS session-ticket keys for the agent listener, derived per epoch from a key in the HSM, so
 * every replica and every restart uses the same ones and an agent's ticket resumes its session
 * wherever it reconnects. The derived keys live in memory only (as Node's own random ticket
 * keys would) and open the tickets of one epoch; the HSM key never leaves the HSM.
 */
export class SessionTickets {
  private timer: NodeJS.Timeout | undefined;
  private epoch = -1;

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
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  private async refresh(): Promise<void> {
    const epoch = Math.floor(this.now() / TICKET_EPOCH_MS);
    if (epoch !== this.epoch) {
      this.apply(await this.hsm.sessionTicketKeys(epoch));
      this.epoch = epoch;
    }
    // At the next boundary (plus a moment, so clocks a little apart still agree most of the time).
    const next = (epoch + 1) * TICKET_EPOCH_MS - this.now() + 1_000;
    this.timer = setTimeout(() => {
      this.refresh().catch((err: unknown) => {
        this.onError(err);
        // The old keys keep working meanwhile (tickets of the new epoch's replicas just fall back).
        this.timer = setTimeout(() => void this.refresh().catch(this.onError), 60_000).unref();
      });
    }, next).unref();
  }
}
