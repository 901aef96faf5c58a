import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';

/**
 * What a connection's settings may be, checked before anything is stored or dialled. Names and
 * addresses only: none of these is secret, and each appears in errors and audit records.
 */

export const MAX_CA_CERTIFICATE = 65_536;
export const MAX_ADMIN_PASSWORD = 1024;
/** PostgreSQL names are at most 63 bytes (NAMEDATALEN - 1); longer ones are silently truncated. */
const MAX_NAME_BYTES = 63;
/** Short enough to leave room in a 63-byte role name for what dynamic secrets append. */
/** Short prefixes (`p_`) would take in roles of any name; the trailing `_` ends it where the lease id starts. */
export const ROLE_PREFIX = /^[a-z][a-z0-9_]{2,30}_$/;

const HOST_LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

export function hostProblem(v: unknown): string | undefined {
  if (typeof v !== 'string') return 'must be a string';
  if (isIP(v) !== 0) return undefined;
  if (v.length === 0 || v.length > 253) return 'must be a host name (at most 253 characters) or an IP address';
  if (!v.split('.').every((l) => HOST_LABEL.test(l))) return 'must be a host name of letters, digits, - and . or an IP address';
  return undefined;
}

/** A database or role name: 1-63 bytes, no control characters (PostgreSQL takes any other). */
export function pgNameProblem(v: unknown): string | undefined {
  if (typeof v !== 'string') return 'must be a string';
  if (v.length === 0 || Buffer.byteLength(v) > MAX_NAME_BYTES) return `must be 1 to ${MAX_NAME_BYTES} bytes`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(v)) return 'must not contain control characters';
  return undefined;
}

export function portProblem(v: unknown): string | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535 ? undefined : 'must be an integer between 1 and 65535';
}

export function rolePrefixProblem(v: unknown): string | undefined {
  if (typeof v !== 'string') return 'must be a string';
  if (!ROLE_PREFIX.test(v))
    return 'must be 4 to 32 characters of a-z, 0-9 and _, starting with a letter and ending with _ (role names are made of it and stay unquoted-safe)';
  // PostgreSQL reserves pg_ for its own roles (pg_signal_backend, ...).
  if (v.startsWith('pg_')) return 'must not start with pg_ (PostgreSQL reserves it for its own roles)';
  return undefined;
}

export function adminPasswordProblem(v: unknown): string | undefined {
  if (typeof v !== 'string') return 'must be a string';
  if (v.length === 0 || v.length > MAX_ADMIN_PASSWORD) return `must be 1 to ${MAX_ADMIN_PASSWORD} characters`;
  if (v.includes('\0')) return 'must not contain NUL';
  return undefined;
}

/** One or more PEM certificates, each of which parses; '' (update only) removes the CA. */
export function caCertificateProblem(v: unknown): string | undefined {
  if (typeof v !== 'string') return 'must be a string';
  if (v.length > MAX_CA_CERTIFICATE) return `must be at most ${MAX_CA_CERTIFICATE} characters`;
  const blocks = v.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) return 'must be PEM: one or more -----BEGIN CERTIFICATE----- blocks';
  for (const [i, pem] of blocks.entries()) {
    try {
      new X509Certificate(pem);
    } catch {
      return `certificate ${i + 1} does not parse`;
    }
  }
  return undefined;
}

/** The default role prefix: `sigil_` and 8 hex digits of the connection's id, so no two connections (or installations) share one. */
export function defaultRolePrefix(connectionId: string): string {
  return `sigil_${connectionId.replace(/-/g, '').slice(0, 8)}_`;
}
