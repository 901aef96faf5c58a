import { Redis } from 'ioredis';
import pg from 'pg';
import { testEnv } from './test-env.js';

/**
 * Where a secret must never be, as text to search: every row of every table of a database (as
 * JSON: text, jsonb, and bytea as \x-hex), and every Redis key under a prefix. Tests search
 * these for a canary in its raw, base64 and hex spellings (`spellings`).
 */

export function spellings(secret: string): string[] {
  const b = Buffer.from(secret);
  return [secret, b.toString('base64'), b.toString('hex')];
}

export async function databaseDump(databaseUrl: string): Promise<string> {
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    const { rows: tables } = await db.query<{ t: string }>("SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public'");
    let dump = '';
    for (const { t } of tables) {
      const { rows } = await db.query<{ j: string }>(`SELECT row_to_json(x)::text AS j FROM ${db.escapeIdentifier(t)} x`);
      dump += rows.map((r) => r.j).join('\n');
    }
    return dump;
  } finally {
    await db.end();
  }
}

export async function redisDump(prefix: string): Promise<string> {
  const redis = new Redis(testEnv().redis.url);
  let all = '';
  try {
    for (const k of await redis.keys(`${prefix}*`)) {
      const type = await redis.type(k);
      if (type === 'string') all += (await redis.get(k)) ?? '';
      else if (type === 'hash') all += JSON.stringify(await redis.hgetall(k));
      else if (type === 'list') all += (await redis.lrange(k, 0, -1)).join('\n');
      else if (type === 'set') all += (await redis.smembers(k)).join('\n');
      else if (type === 'zset') all += (await redis.zrange(k, 0, -1)).join('\n');
      else if (type === 'stream') all += JSON.stringify(await redis.xrange(k, '-', '+'));
    }
    return all;
  } finally {
    redis.disconnect();
  }
}
