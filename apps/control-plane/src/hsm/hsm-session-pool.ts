import { acquireLibrary, ckr, findSlotByLabel, pkcs11js, releaseLibrary, type Handle, type Pkcs11 } from './pkcs11-library.js';

/**
 * A pool of logged-in PKCS#11 sessions. Each in-flight call owns one session exclusively:
 * SoftHSM crashes the process when two calls share a session concurrently. Heavy calls use
 * pkcs11js' *Async variants, which run on libuv's thread pool, so they stay off the event
 * loop; the pool size bounds HSM concurrency.
 *
 * Lost sessions (token removed or reset, HSM restarted) are discarded and the call is
 * retried once on a freshly opened, re-logged-in session.
 */
export interface HsmSessionPoolOptions {
  module: string;
  tokenLabel: string;
  pin: string;
  size: number;
}

/** Errors after which a session (or the login) is gone and must be rebuilt. */
const SESSION_LOST = new Set([
  'CKR_SESSION_HANDLE_INVALID',
  'CKR_SESSION_CLOSED',
  'CKR_USER_NOT_LOGGED_IN',
  'CKR_TOKEN_NOT_PRESENT',
  'CKR_TOKEN_NOT_RECOGNIZED',
  'CKR_DEVICE_REMOVED',
  'CKR_DEVICE_ERROR',
  'CKR_SLOT_ID_INVALID',
]);

export class HsmUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HsmUnavailableError';
  }
}

export class HsmSessionPool {
  readonly pkcs11: Pkcs11;
  private slot: Handle | undefined;
  private readonly idle: Handle[] = [];
  private open = 0;
  private readonly waiters: Array<(s: Handle) => void> = [];
  private closed = false;

  constructor(private readonly options: HsmSessionPoolOptions) {
    this.pkcs11 = acquireLibrary(options.module);
  }

  get size(): number {
    return this.options.size;
  }

  /** Runs `fn` with a session nobody else is using; retries once if the session was lost. */
  async withSession<T>(fn: (session: Handle) => Promise<T> | T): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const session = await this.acquire();
      let healthy = true;
      try {
        return await fn(session);
      } catch (err) {
        const code = ckr(err);
        if (code !== undefined && SESSION_LOST.has(code)) {
          healthy = false;
          this.resetAfterLoss();
          if (attempt === 0) continue;
          throw new HsmUnavailableError(`HSM session lost (${code})`);
        }
        throw err;
      } finally {
        this.release(session, healthy);
      }
    }
  }

  /** Token and slot information, for readiness and diagnostics. */
  tokenInfo(): pkcs11js.TokenInfo {
    return this.pkcs11.C_GetTokenInfo(this.resolveSlot());
  }

  mechanisms(): number[] {
    return this.pkcs11.C_GetMechanismList(this.resolveSlot());
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.idle.splice(0)) this.closeSession(s);
    releaseLibrary(this.options.module);
  }

  private async acquire(): Promise<Handle> {
    if (this.closed) throw new HsmUnavailableError('HSM pool is closed');
    const session = this.idle.pop();
    if (session) return session;
    if (this.open < this.options.size) {
      this.open += 1;
      try {
        return this.openSession();
      } catch (err) {
        this.open -= 1;
        throw err;
      }
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private release(session: Handle, healthy: boolean): void {
    if (!healthy || this.closed) {
      this.closeSession(session);
      this.open -= 1;
      // A waiter now has room to open a fresh session.
      const waiter = this.waiters.shift();
      if (waiter && !this.closed) {
        this.open += 1;
        try {
          waiter(this.openSession());
        } catch {
          this.open -= 1;
        }
      }
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter) waiter(session);
    else this.idle.push(session);
  }

  private openSession(): Handle {
    const slot = this.resolveSlot();
    const session = this.pkcs11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    try {
      this.pkcs11.C_Login(session, pkcs11js.CKU_USER, this.options.pin);
    } catch (err) {
      // Login state is per application: the first session logs every session in.
      if (ckr(err) !== 'CKR_USER_ALREADY_LOGGED_IN') {
        this.closeSession(session);
        throw err;
      }
    }
    return session;
  }

  private resolveSlot(): Handle {
    if (this.slot !== undefined) return this.slot;
    const slot = findSlotByLabel(this.pkcs11, this.options.tokenLabel);
    if (slot === undefined) throw new HsmUnavailableError(`no PKCS#11 token labelled "${this.options.tokenLabel}"`);
    this.slot = slot;
    return slot;
  }

  /** After a loss the slot may have changed (token re-inserted) and idle sessions are dead too. */
  private resetAfterLoss(): void {
    this.slot = undefined;
    for (const s of this.idle.splice(0)) {
      this.closeSession(s);
      this.open -= 1;
    }
  }

  private closeSession(session: Handle): void {
    try {
      this.pkcs11.C_CloseSession(session);
    } catch {
      // already gone
    }
  }
}
