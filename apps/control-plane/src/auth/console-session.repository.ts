import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { ApiTokenRole } from './api-token.entity.js';

/** A live console session with its API token (never the token or the cookie's secret). */
export interface ConsoleSession {
  id: string;
  csrfToken: string;
  expiresAt: Date;
  lastSeenAt: Date;
  tokenId: string;
  tokenName: string;
  role: ApiTokenRole;
  projectId: string | null;
}

/** Live sessions one token may hold (browsers, tabs signed in separately); a new one ends the oldest. */
export const MAX_SESSIONS_PER_TOKEN = 20;

/** console_sessions (migration 13): one row per signed-in browser. */
@Injectable()
export class ConsoleSessionRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  async insert(s: {
    tokenId: string;
    secretHash: Buffer;
    csrfToken: string;
    maxSeconds: number;
  }): Promise<{ id: string; expiresAt: Date }> {
    const rows = await this.ds.query<Array<{ id: string; expires_at: Date }>>(
      `INSERT INTO console_sessions (token_id, secret_hash, csrf_token, expires_at)
       VALUES ($1, $2, $3, now() + make_interval(secs => $4))
       RETURNING id, expires_at`,
      [s.tokenId, s.secretHash, s.csrfToken, s.maxSeconds],
    );
    return { id: rows[0]!.id, expiresAt: rows[0]!.expires_at };
  }

  /**
   * The session whose secret hashes to `secretHash`, if it is live: before its expiry, seen within
   * the idle timeout, and its token not revoked. Its last-seen time moves on when older than
   * `touchAfterSeconds` (one write per session per interval, not per request).
   */
  async findLive(secretHash: Buffer, idleSeconds: number, touchAfterSeconds: number): Promise<ConsoleSession | null> {
    const rows = await this.ds.query<
      Array<{
        id: string;
        csrf_token: string;
        expires_at: Date;
        last_seen_at: Date;
        token_id: string;
        name: string;
        role: ApiTokenRole;
        project_id: string | null;
      }>
    >(
      `WITH live AS (
         SELECT s.id, s.csrf_token, s.expires_at, s.last_seen_at, t.id AS token_id, t.name, t.role, t.project_id
           FROM console_sessions s JOIN api_tokens t ON t.id = s.token_id
          WHERE s.secret_hash = $1 AND t.revoked_at IS NULL
            AND s.expires_at > now() AND s.last_seen_at > now() - make_interval(secs => $2)
       ), touched AS (
         UPDATE console_sessions s SET last_seen_at = now()
           FROM live WHERE s.id = live.id AND live.last_seen_at < now() - make_interval(secs => $3)
         RETURNING s.id
       )
       SELECT * FROM live`,
      [secretHash, idleSeconds, touchAfterSeconds],
    );
    const r = rows[0];
    if (!r) return null;
    return {
      id: r.id,
      csrfToken: r.csrf_token,
      expiresAt: r.expires_at,
      lastSeenAt: r.last_seen_at,
      tokenId: r.token_id,
      tokenName: r.name,
      role: r.role,
      projectId: r.project_id,
    };
  }

  async deleteBySecret(secretHash: Buffer): Promise<void> {
    await this.ds.query('DELETE FROM console_sessions WHERE secret_hash = $1', [secretHash]);
  }

  async delete(id: string): Promise<void> {
    await this.ds.query('DELETE FROM console_sessions WHERE id = $1', [id]);
  }

  /** Sessions past their expiry or idle timeout, in batches (run at each sign-in). */
  async deleteEnded(idleSeconds: number): Promise<void> {
    await this.ds.query(
      `DELETE FROM console_sessions WHERE id IN (
         SELECT id FROM console_sessions
          WHERE expires_at <= now() OR last_seen_at <= now() - make_interval(secs => $1)
          LIMIT 1000)`,
      [idleSeconds],
    );
  }
}
