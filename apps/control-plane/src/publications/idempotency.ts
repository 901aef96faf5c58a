import { createHash } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import type { Actor } from '../auth/policy.js';
import { DeliveryError, DeliveryErrorCode } from '../delivery/delivery.errors.js';
import { IdempotencyRepository } from './idempotency.repository.js';

const KEY = /^[\x21-\x7e]{1,128}$/;

/**
 * `Idempotency-Key` for publish and unpublish: the first response to a key is stored (per API
 * token, for 24 h) and returned again for a retry of the same request; the same key with a
 * different request is refused. Responses hold no values, so storing them is safe.
 */
@Injectable()
export class IdempotencyService {
  constructor(@Inject(IdempotencyRepository) private readonly repo: IdempotencyRepository) {}

  async run<T>(actor: Actor, key: string | undefined, request: unknown, fn: () => Promise<T>): Promise<{ body: T; replayed: boolean }> {
    if (key === undefined) return { body: await fn(), replayed: false };
    if (!KEY.test(key))
      throw new DeliveryError(DeliveryErrorCode.InvalidIdempotencyKey, 'Idempotency-Key must be 1-128 printable characters');
    const hash = createHash('sha256').update(JSON.stringify(request)).digest();
    const stored = await this.repo.find<T>(actor.tokenId, key);
    if (stored) {
      if (!stored.requestHash.equals(hash)) {
        throw new DeliveryError(DeliveryErrorCode.IdempotencyKeyReused, 'this Idempotency-Key was used for a different request');
      }
      return { body: stored.response, replayed: true };
    }
    const body = await fn();
    await this.repo.save(actor.tokenId, key, hash, body);
    return { body, replayed: false };
  }
}
