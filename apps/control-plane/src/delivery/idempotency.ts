import { createHash } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { Actor } from '../auth/policy.js';
import { DeliveryError, DeliveryErrorCode } from './delivery.errors.js';

const KEY = /^[\x21-\x7e]{1,128}$/;
const RETENTION = '24 hours';

/**
 * `Idempotency-Key` for publish and unpublish: the first response to a key is stored (per API
 * token, for 24 h) and returned again for a retry of the same request; the same key with a
 * different request is refused. Responses hold no values, so storing them is safe.
 */
@Injectable()
export class IdempotencyService {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  async run<T>(actor: Actor, key: string | undefined, request: unknown, fn: () => Promise<T>): Promise<{ body: T; replayed: boolean }> {
    if (key === undefined) return { body: await fn(), replayed: false };
    if (!KEY.test(key))
      throw new DeliveryError(DeliveryErrorCode.InvalidIdempotencyKey, 'Idempotency-Key must be 1-128 printable characters');
    const hash = createHash('sha256').update(JSON.stringify(request)).digest();
    const [stored] = await this.ds.query<Array<{ request_hash: Buffer; response: T }>>(
      `SELECT request_hash, response FROM idempotency_keys WHERE token_id = $1 AND key = $2 AND created_at > now() - interval '${RETENTION}'`,
      [actor.tokenId, key],
    );
    if (stored) {
      if (!stored.request_hash.equals(hash)) {
        throw new DeliveryError(DeliveryErrorCode.IdempotencyKeyReused, 'this Idempotency-Key was used for a different request');
      }
      return { body: stored.response, replayed: true };
    }
    const body = await fn();
    await this.ds.query(`DELETE FROM idempotency_keys WHERE created_at < now() - interval '${RETENTION}'`);
    await this.ds.query(
      `INSERT INTO idempotency_keys (token_id, key, request_hash, status, response) VALUES ($1, $2, $3, 200, $4)
       ON CONFLICT (token_id, key) DO UPDATE SET request_hash = $3, response = $4, created_at = now()`,
      [actor.tokenId, key, hash, JSON.stringify(body)],
    );
    return { body, replayed: false };
  }
}
