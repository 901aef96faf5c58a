import { Injectable } from '@nestjs/common';
import { RateLimiter } from '../common/rate-limiter.js';

/**
 * Failed authentications per client address, shared by the guard (bearer tokens, session
 * cookies) and console sign-in: 20 at once, then 5 per second, then 429. Only failures are
 * limited: a valid credential from a limited address still gets through, because behind one
 * ingress every client has the same address and a flood of bad tokens must not lock out the
 * rest. Guessing stays hopeless at 5 per second against 256-bit tokens (a bootstrap token an
 * operator chose must have 32 characters or more). Their audit records are aggregated
 * (FailedAttempts).
 */
@Injectable()
export class FailedAuthentications {
  private readonly limiter = new RateLimiter(5, 20);

  /** Counts a failure; the seconds to wait when that used up the address's allowance. */
  failed(address: string): number {
    return this.limiter.take(address);
  }
}
