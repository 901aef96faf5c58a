import { QueryFailedError } from 'typeorm';

/**
 * The SQLSTATE of a statement PostgreSQL refused (e.g. '23505'), if `err` is one: how code
 * outside the repositories reads a database failure without knowing TypeORM's error type.
 */
export function sqlState(err: unknown): string | undefined {
  if (!(err instanceof QueryFailedError)) return undefined;
  const code = (err.driverError as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Which PostgreSQL constraint a failed statement broke, if any: services turn the ones they
 * own into their own 409s (the database, not a prior read, is what makes them race-free).
 */
export function violatedConstraint(err: unknown): { kind: 'unique' | 'foreign_key'; constraint: string } | undefined {
  const code = sqlState(err);
  if (code !== '23505' && code !== '23503') return undefined;
  const constraint = ((err as QueryFailedError).driverError as { constraint?: string }).constraint ?? '';
  return { kind: code === '23505' ? 'unique' : 'foreign_key', constraint };
}

/** Whether a failed statement broke a unique constraint (a name taken concurrently, typically). */
export const isUniqueViolation = (err: unknown): boolean => sqlState(err) === '23505';
