import { CredentialEngineError, type CredentialEngineErrorCode, type EngineSession } from '../connections/engines/credential-engine.js';

/** Engine calls at once per connection: a fleet's issue is parallel, but one database is not flooded. */
export const ENGINE_CONCURRENCY = 8;

/** Runs `work` over `items`, at most `limit` at once; resolves when all settled (work handles its own errors). */
export async function eachBounded<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const runner = async () => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, runner));
}

/** Engine failures that are about the target, not the role: every other call there would fail the same way. */
const TARGET_DOWN = new Set<CredentialEngineErrorCode>(['unreachable', 'auth_failed', 'tls_failed', 'host_denied']);

/**
 * The error, when it says the whole target is down (unreachable, refusing the admin): the rest of
 * a batch for that target then fails at once with it, instead of each call waiting out its own
 * connect timeout while other connections' work waits behind the batch.
 */
export function targetDown(err: unknown): CredentialEngineError | undefined {
  return err instanceof CredentialEngineError && TARGET_DOWN.has(err.code) ? err : undefined;
}

/** Failures grouped by their error (the fast-failed share one), for one write, log line and backoff each. */
export function byCause<T extends { err: unknown }>(failures: T[]): Map<unknown, T[]> {
  const groups = new Map<unknown, T[]>();
  for (const f of failures) groups.set(f.err, [...(groups.get(f.err) ?? []), f]);
  return groups;
}

/** What a call on a session says: go on with it, or open a new one (the call failed; its connection may be broken). */
export type SessionStep = 'next' | 'reopen';

/**
 * `work` over `items`, at most `limit` at once, each runner holding one engine session (one login
 * for many calls, where a call each would log in each time: SCRAM costs the target ~4,096 PBKDF2
 * rounds per login). A runner opens a new session after a call that failed, without waiting for
 * the old one to close (a hung connection must not hold the runner). A session that cannot be
 * opened fails every item not yet started with that error (`fail`): the login is the target's, not
 * the item's, so the next would fail the same way.
 */
export async function eachOnSessions<T>(
  items: T[],
  limit: number,
  open: (fn: (s: EngineSession) => Promise<void>) => Promise<void>,
  work: (item: T, s: EngineSession) => Promise<SessionStep>,
  fail: (item: T, err: unknown) => void,
): Promise<void> {
  let next = 0;
  let loginFailed: { err: unknown } | undefined;
  const session = () =>
    new Promise<void>((resolve) => {
      let settled = false;
      const settle = () => {
        settled = true;
        resolve();
      };
      open(async (s) => {
        while (next < items.length && !loginFailed) if ((await work(items[next++]!, s)) === 'reopen') return settle();
        settle();
      }).catch((err: unknown) => {
        if (settled) return; // closing a session that was done with failed: nothing to report
        loginFailed ??= { err };
        settle();
      });
    });
  const runner = async () => {
    while (next < items.length && !loginFailed) await session();
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, runner));
  if (loginFailed) while (next < items.length) fail(items[next++]!, loginFailed.err);
}

/**
 * Seconds until attempt `attempts` + 1: doubling from one sweep interval, capped at 60 intervals
 * and 5 minutes (a database that is down is retried steadily, not hammered).
 */
export function backoffSeconds(attempts: number, sweepIntervalMs: number): number {
  const base = Math.max(1, Math.ceil(sweepIntervalMs / 1000));
  const cap = Math.min(300, Math.max(base, Math.ceil((sweepIntervalMs * 60) / 1000)));
  return Math.min(cap, base * 2 ** Math.min(Math.max(attempts - 1, 0), 16));
}

/**
 * What a lease records of a failure: the engine's code and its message (which the engine keeps
 * free of any password, statement or connection string); anything else is named by its class
 * only, since an unknown error's message is not known to be safe.
 */
export function safeError(err: unknown): string {
  if (err instanceof CredentialEngineError) return `${err.code}: ${err.message}`.slice(0, 500);
  if (err instanceof LeaseTimeoutError) return `timeout: ${err.message}`;
  const code = err instanceof Error ? (err as Error & { code?: unknown }).code : undefined;
  if (err instanceof Error && typeof code === 'string') return `${err.name}: ${code}`.slice(0, 200);
  // Not the message (a driver's can quote a statement), but where it came from, so it can be traced.
  return err instanceof Error ? `internal: ${err.name}${origin(err)}` : 'internal: error';
}

/** ` at file:line` of the innermost frame of Sigil's own code (or the first frame), from the stack. */
function origin(err: Error): string {
  const frames = (err.stack ?? '').split('\n').filter((l) => /^\s+at /.test(l));
  const frame = frames.find((l) => l.includes('/apps/') && !l.includes('node_modules')) ?? frames[0];
  const where = frame && /\(?((?:file:\/\/)?[^()\s]+:\d+):\d+\)?$/.exec(frame)?.[1];
  return where ? ` at ${where.replace(/^.*\/(apps|node_modules)\//, '$1/')}` : '';
}

/**
 * Database codes of a statement that lost a race, not a wrong statement: PostgreSQL answers
 * concurrent GRANTs on one object with XX000 "tuple concurrently updated", and serialization
 * failures and deadlocks are retryable by definition. The engine runs each role's statements
 * in one transaction, so a retry starts from nothing.
 */
const TRANSIENT_CODES = new Set(['XX000', '40001', '40P01']);
// Eight runners granting on one object keep colliding (bench-leases at 1,000 clusters failed 2 %
// of issues after 5 tries within a second): 10 tries, the wait doubling to about 1.3 s (about 5 s in all).
const TRANSIENT_ATTEMPTS = 10;

/** `call`, retried when the engine lost a race (after 20 ms, doubling, jittered); anything else fails at once. */
export async function retryTransient<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      const transient =
        err instanceof CredentialEngineError && err.code === 'statement_failed' && TRANSIENT_CODES.has(err.databaseCode ?? '');
      if (!transient || attempt >= TRANSIENT_ATTEMPTS) throw err;
      await new Promise((r) => setTimeout(r, 10 * 2 ** Math.min(attempt, 7) * (0.5 + Math.random())));
    }
  }
}

export class LeaseTimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LeaseTimeoutError';
  }
}

/**
 * `p`, or a LeaseTimeoutError after `ms`. The call itself goes on; what it may still create is
 * the reaper's (a role no live lease names).
 */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new LeaseTimeoutError(`${what} took longer than ${Math.round(ms / 1000)}s`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Whether `role` has the shape roleName gives: the prefix, then 20 hex digits of a lease id. */
export function isLeaseRoleName(prefix: string, role: string): boolean {
  return role.startsWith(prefix) && /^[0-9a-f]{20}$/.test(role.slice(prefix.length));
}

/**
 * A role's name: the connection's prefix and 20 hex digits of the lease id, which is chosen before
 * the role exists (PostgreSQL identifiers have at most 63 bytes).
 */
export function roleName(prefix: string, leaseId: string): string {
  const name = `${prefix}${leaseId.replace(/-/g, '').slice(0, 20)}`;
  if (Buffer.byteLength(name) > 63) throw new Error('the connection role prefix is too long for a role name');
  return name;
}
