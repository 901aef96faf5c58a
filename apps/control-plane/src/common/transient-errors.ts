/**
 * Failures that say "a dependency is busy or briefly gone", not "this request is wrong": the
 * database pool timing out under load, a dropped or refused connection, PostgreSQL shutting
 * down or refusing connections, a serialization failure or deadlock. Callers should retry.
 */
const PG_TRANSIENT = new Set(['57P01', '57P02', '57P03', '53300', '40001', '40P01', '08000', '08003', '08006']);
const NET_TRANSIENT = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT']);
const MESSAGES = [/timeout exceeded when trying to connect/, /Connection terminated/, /Client has encountered a connection error/];

export function isTransientDependencyError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const e = err as Error & { code?: unknown; driverError?: { code?: unknown } };
  const code = typeof e.code === 'string' ? e.code : typeof e.driverError?.code === 'string' ? e.driverError.code : undefined;
  if (code && (PG_TRANSIENT.has(code) || NET_TRANSIENT.has(code))) return true;
  return MESSAGES.some((m) => m.test(e.message));
}
