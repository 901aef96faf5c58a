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

/**
 * PKCS#11 results that say "the HSM (its token, session or device) is not there right now",
 * not "these bytes are wrong": after the worker's own reconnect-and-retry, such a failure is an
 * outage callers should retry. Data errors (a tampered ciphertext, a bad wrapped key) are not.
 */
const HSM_UNAVAILABLE = new Set([
  'CKR_GENERAL_ERROR',
  'CKR_FUNCTION_FAILED',
  'CKR_DEVICE_ERROR',
  'CKR_DEVICE_MEMORY',
  'CKR_DEVICE_REMOVED',
  'CKR_HOST_MEMORY',
  'CKR_TOKEN_NOT_PRESENT',
  'CKR_TOKEN_NOT_RECOGNIZED',
  'CKR_SESSION_CLOSED',
  'CKR_SESSION_COUNT',
  'CKR_SESSION_HANDLE_INVALID',
  'CKR_USER_NOT_LOGGED_IN',
  'CKR_PIN_INCORRECT',
  'CKR_PIN_LOCKED',
  'CKR_OBJECT_HANDLE_INVALID',
  'CKR_KEY_HANDLE_INVALID',
  'CKR_CRYPTOKI_NOT_INITIALIZED',
  'CKR_SLOT_ID_INVALID',
]);

/**
 * An HSM error (hsm/'s HsmError, recognised by name so common/ does not depend on hsm/) that
 * means the HSM is unavailable: one of the codes above, or a failure with no PKCS#11 code at all
 * (a worker thread died, the pool is shutting down, the token was not found).
 */
export function isHsmUnavailableError(err: unknown): boolean {
  if (!(err instanceof Error) || err.name !== 'HsmError') return false;
  const ckr = (err as Error & { ckr?: unknown }).ckr;
  return typeof ckr !== 'string' || HSM_UNAVAILABLE.has(ckr);
}
