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

/**
 * A hint for the console's page script, set and cleared with the session cookie: "a session
 * cookie may be held, ask who is signed in". It holds no secret and the server never reads it.
 * Without it the console goes straight to sign-in instead of probing GET /console/session,
 * whose expected 401 a browser logs as a failed request on every first visit.
 */
export const SIGNED_IN_COOKIE = '__Host-sigil_signed_in';

/** Whether a Cookie header holds either console cookie (a refusal then clears both). */
export function holdsConsoleCookies(cookieHeader: string | undefined): boolean {
  return cookieHeader !== undefined && (cookieHeader.includes(SESSION_COOKIE) || cookieHeader.includes(SIGNED_IN_COOKIE));
}

/** The Set-Cookie values of a new session: its secret (HttpOnly) and the signed-in hint. */
export function sessionCookies(secret: string, maxAgeSeconds: number): string[] {
  return [
    serialize(SESSION_COOKIE, secret, { httpOnly: true, secure: true, sameSite: 'strict', path: '/', maxAge: maxAgeSeconds }),
    serialize(SIGNED_IN_COOKIE, '1', { secure: true, sameSite: 'strict', path: '/', maxAge: maxAgeSeconds }),
  ];
}

/** Tells the browser to drop both cookies (sign-out, or a session that has ended). */
export function clearedSessionCookies(): string[] {
  return [
    serialize(SESSION_COOKIE, '', { httpOnly: true, secure: true, sameSite: 'strict', path: '/', maxAge: 0 }),
    serialize(SIGNED_IN_COOKIE, '', { secure: true, sameSite: 'strict', path: '/', maxAge: 0 }),
  ];
}
