import { featureError, type ErrorKinds } from './sigil-error.js';
import { isHsmUnavailableError, isTransientDependencyError } from './transient-errors.js';

/** Codes of a dependency that is busy or away: not the request's fault, so callers retry. */
export enum DependencyErrorCode {
  /** The database (its pool, or the work queue in front of it) is busy or briefly unreachable. */
  Busy = 'busy',
  /** The HSM (its token, session or device) is not there right now. */
  HsmUnavailable = 'hsm_unavailable',
}

export const DEPENDENCY_ERROR_KINDS: ErrorKinds<DependencyErrorCode> = {
  [DependencyErrorCode.Busy]: 'unavailable',
  [DependencyErrorCode.HsmUnavailable]: 'unavailable',
};

export class DependencyError extends featureError(DEPENDENCY_ERROR_KINDS) {}

/** How long clients should wait before retrying when the database or the HSM is busy or away. */
export const DEPENDENCY_RETRY_AFTER_S = 2;

/**
 * A raw dependency failure (a driver error, a PKCS#11 outage) as the DependencyError both edges
 * answer with; undefined for anything else. The message is fixed: the raw one can quote data.
 */
export function asDependencyError(err: unknown): DependencyError | undefined {
  if (isTransientDependencyError(err))
    return new DependencyError(DependencyErrorCode.Busy, 'the database is busy or briefly unreachable; retry shortly', {
      retryAfterSeconds: DEPENDENCY_RETRY_AFTER_S,
    });
  if (isHsmUnavailableError(err))
    return new DependencyError(DependencyErrorCode.HsmUnavailable, 'the HSM is unavailable; retry shortly', {
      retryAfterSeconds: DEPENDENCY_RETRY_AFTER_S,
    });
  return undefined;
}
