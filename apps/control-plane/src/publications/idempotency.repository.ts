import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';

/** How long a stored response answers a retry. */
const RETENTION = '24 hours';

/** Stored first responses to `Idempotency-Key`s (table idempotency_keys), per API token. */
@Injectable()
export class IdempotencyRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  /** The response stored for the token's key within the retention, with the hash of the request that made it. */
  async find<T>(tokenId: string, key: string): Promise<{ requestHash: Buffer; response: T } | undefined> {
    const [stored] = await this.ds.query<Array<{ request_hash: Buffer; response: T }>>(
      `SELECT request_hash, response FROM idempotency_keys WHERE token_id = $1 AND key = $2 AND created_at > now() - interval '${RETENTION}'`,
      [tokenId, key],
    );
    return stored && { requestHash: stored.request_hash, response: stored.response };
  }

  /** Stores the response (replacing an expired entry of the same key) and drops entries past the retention. */
  async save(tokenId: string, key: string, requestHash: Buffer, response: unknown): Promise<void> {
    await this.ds.query(`DELETE FROM idempotency_keys WHERE created_at < now() - interval '${RETENTION}'`);
    await this.ds.query(
      `INSERT INTO idempotency_keys (token_id, key, request_hash, status, response) VALUES ($1, $2, $3, 200, $4)
       ON CONFLICT (token_id, key) DO UPDATE SET request_hash = $3, response = $4, created_at = now()`,
      [tokenId, key, requestHash, JSON.stringify(response)],
    );
  }
}
