import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';

/**
 * A PostgreSQL SCRAM-SHA-256 password verifier (RFC 5802, RFC 7677; PostgreSQL's
 * `scram_build_secret`): what `CREATE ROLE … PASSWORD '<verifier>'` stores as is. Sigil sends
 * the verifier, never the password, so a generated password's plaintext never reaches the
 * target database, its statement log or pg_stat_statements (docs/decisions/019).
 *
 *   SaltedPassword = PBKDF2-HMAC-SHA256(password, salt, iterations, 32)
 *   StoredKey      = SHA-256(HMAC(SaltedPassword, "Client Key"))
 *   ServerKey      = HMAC(SaltedPassword, "Server Key")
 *   verifier       = SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>
 */

export const SCRAM_ITERATIONS = 4096;
export const SCRAM_SALT_BYTES = 16;

export interface ScramKeys {
  storedKey: Buffer;
  serverKey: Buffer;
}

/**
 * PostgreSQL prepares the password with SASLprep before hashing. For printable ASCII
 * (0x20–0x7e) SASLprep changes nothing; other characters would need its normalisation and
 * mapping tables, so they are refused rather than hashed differently from the server.
 */
export function scramPasswordProblem(password: Buffer): string | undefined {
  if (password.length === 0) return 'the password is empty';
  for (const b of password) if (b < 0x20 || b > 0x7e) return 'the password must be printable ASCII for a SCRAM verifier';
  return undefined;
}

export function scramKeys(password: Buffer, salt: Buffer, iterations = SCRAM_ITERATIONS): ScramKeys {
  const problem = scramPasswordProblem(password);
  if (problem) throw new RangeError(problem);
  const salted = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  try {
    const clientKey = createHmac('sha256', salted).update('Client Key').digest();
    const storedKey = createHash('sha256').update(clientKey).digest();
    clientKey.fill(0);
    return { storedKey, serverKey: createHmac('sha256', salted).update('Server Key').digest() };
  } finally {
    salted.fill(0);
  }
}

/** The verifier of `password` with a fresh random salt (or `salt`, for test vectors). */
export function scramVerifier(password: Buffer, salt: Buffer = randomBytes(SCRAM_SALT_BYTES), iterations = SCRAM_ITERATIONS): string {
  const { storedKey, serverKey } = scramKeys(password, salt, iterations);
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}
