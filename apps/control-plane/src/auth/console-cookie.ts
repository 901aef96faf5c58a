import { parse, serialize } from 'cookie';

/**
 * The console's session cookie (decision 021). `__Host-`: the browser keeps it only if it is
 * Secure, has Path=/ and no Domain, so no subdomain can set or shadow it. HttpOnly: page script
 * never reads it. SameSite=Strict: no other site's page makes the browser send it. Browsers
 * accept Secure cookies from http://localhost and http://127.0.0.1, so `make up` works without TLS.
 */
export const SESSION_COOKIE = '__Host-sigil_session';

/** The header every mutation made with the session cookie must carry (the session's CSRF token). */
export const CSRF_HEADER = 'x-csrf-token';

/** The session secret from a Cookie header, if it holds one of the right shape. */
export function sessionSecret(cookieHeader: string | undefined): string | undefined {
  if (!cookieHeader) return undefined;
  // Two of it (a sibling subdomain's cookie sent first, or a nameless `=__Host-…` one): none counts.
  if (cookieHeader.split(SESSION_COOKIE).length > 2) return undefined;
  const value = parse(cookieHeader)[SESSION_COOKIE];
  return value !== undefined && /^[A-Za-z0-9_-]{43}$/.test(value) ? value : undefined;
}

export function sessionCookie(secret: string, maxAgeSeconds: number): string {
  return serialize(SESSION_COOKIE, secret, { httpOnly: true, secure: true, sameSite: 'strict', path: '/', maxAge: maxAgeSeconds });
}

/** Tells the browser to drop the cookie (sign-out, or a session that has ended). */
export function clearedSessionCookie(): string {
  return serialize(SESSION_COOKIE, '', { httpOnly: true, secure: true, sameSite: 'strict', path: '/', maxAge: 0 });
}
