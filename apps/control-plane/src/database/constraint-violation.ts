import { QueryFailedError } from 'typeorm';

/**
 * Which PostgreSQL constraint a failed statement broke, if any: services turn the ones they
 * own into their own 409s (the database, not a prior read, is what makes them race-free).
 */
export function violatedConstraint(err: unknown): { kind: 'unique' | 'foreign_key'; constraint: string } | undefined {
  if (!(err instanceof QueryFailedError)) return undefined;
  const e = err.driverError as { code?: string; constraint?: string };
  if (e.code === '23505') return { kind: 'unique', constraint: e.constraint ?? '' };
  if (e.code === '23503') return { kind: 'foreign_key', constraint: e.constraint ?? '' };
  return undefined;
}
