import { Injectable } from '@nestjs/common';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  decodeJwt,
  errors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import { serviceAccountSubject, type KubernetesIdentity } from '../clusters/kubernetes-identity.js';
import { httpsGet } from './https-get.js';

/** Why a service-account token was refused: for the log only, the caller gets one generic answer. */
export type TokenRefusal =
  | 'not_configured'
  | 'malformed'
  | 'bad_signature'
  | 'expired'
  | 'wrong_issuer'
  | 'wrong_audience'
  | 'wrong_service_account'
  | 'keys_unavailable';

export class ServiceAccountTokenRefused extends Error {
  constructor(
    readonly reason: TokenRefusal,
    message: string,
  ) {
    super(message);
    this.name = 'ServiceAccountTokenRefused';
  }
}

/** Kubernetes signs service-account tokens with RSA or ECDSA. */
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'ES256', 'ES384'];
const CLOCK_TOLERANCE_S = 30;
const MAX_CACHED = 2_000;
/** Discovery documents and key sets are re-fetched after this long. */
export const ISSUER_CACHE_TTL_MS = 10 * 60_000;
/** After a failed fetch, the issuer is not asked again for this long (every token is refused meanwhile). */
export const ISSUER_FAILURE_COOLDOWN_MS = 30_000;

/**
 * Verifies a projected service-account token against the cluster's registered identity: the
 * signature with the issuer's JWKS (inline, fetched, or found by OIDC discovery), `iss`, `aud`
 * (the Sigil audience), `exp`/`nbf`, and `sub` naming the one allowed service account.
 *
 * Enroll is unauthenticated, so nothing is fetched for a token that could not pass anyway: the
 * unverified claims are checked first. Discovery documents and key sets are cached for
 * ISSUER_CACHE_TTL_MS (jose refetches a key set early, at most every 30 s, when a token names an
 * unknown key); failures for ISSUER_FAILURE_COOLDOWN_MS. Fetches go to public addresses only,
 * unless the identity's `allowPrivateAddresses` (set by an admin) says otherwise.
 */
@Injectable()
export class ServiceAccountTokenVerifier {
  private readonly keySets = new Map<string, JWTVerifyGetKey>();
  private readonly discovered = new Map<string, { jwksUri: string; until: number }>();
  private readonly failedUntil = new Map<string, number>();

  async verify(token: string, identity: KubernetesIdentity, audience: string): Promise<void> {
    const expected = serviceAccountSubject(identity.serviceAccount);
    precheck(token, identity.issuer, audience, expected);
    const keys = await this.keySet(identity);
    let payload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        issuer: identity.issuer,
        audience,
        algorithms: ALGORITHMS,
        requiredClaims: ['exp', 'sub'],
        clockTolerance: CLOCK_TOLERANCE_S,
      }));
    } catch (err) {
      const refused = refusal(err);
      if (refused.reason === 'keys_unavailable') this.failed(cacheKey(identity));
      throw refused;
    }
    if (payload.sub !== expected) {
      throw new ServiceAccountTokenRefused('wrong_service_account', `the token is for ${JSON.stringify(payload.sub)}, not ${expected}`);
    }
  }

  private async keySet(identity: KubernetesIdentity): Promise<JWTVerifyGetKey> {
    if (identity.jwks) return createLocalJWKSet(identity.jwks);
    const key = cacheKey(identity);
    if ((this.failedUntil.get(key) ?? 0) > Date.now()) {
      throw new ServiceAccountTokenRefused('keys_unavailable', 'the issuer failed recently; not asking again yet');
    }
    const jwksUri = identity.jwksUri ?? (await this.discover(identity, key));
    const setKey = JSON.stringify([key, jwksUri]);
    let set = this.keySets.get(setKey);
    if (!set) {
      set = createRemoteJWKSet(new URL(jwksUri), {
        timeoutDuration: 5_000,
        cooldownDuration: 30_000,
        cacheMaxAge: ISSUER_CACHE_TTL_MS,
        [customFetch]: async (url, o) => {
          const res = await httpsGet(url, { ca: identity.caCert, signal: o.signal, allowPrivateAddresses: identity.allowPrivateAddresses });
          if (res.status !== 200) throw new Error(`GET ${url} answered HTTP ${res.status}`);
          return res;
        },
      });
      bounded(this.keySets).set(setKey, set);
    }
    return set;
  }

  /** OIDC discovery: the issuer's /.well-known/openid-configuration names its jwks_uri. */
  private async discover(identity: KubernetesIdentity, key: string): Promise<string> {
    const cached = this.discovered.get(key);
    if (cached && cached.until > Date.now()) return cached.jwksUri;
    const url = `${identity.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
    try {
      const res = await httpsGet(url, { ca: identity.caCert, allowPrivateAddresses: identity.allowPrivateAddresses });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const doc = (await res.json()) as { jwks_uri?: unknown };
      if (typeof doc.jwks_uri !== 'string' || !doc.jwks_uri.startsWith('https://')) throw new Error('no https jwks_uri');
      bounded(this.discovered).set(key, { jwksUri: doc.jwks_uri, until: Date.now() + ISSUER_CACHE_TTL_MS });
      return doc.jwks_uri;
    } catch (err) {
      this.failed(key);
      throw new ServiceAccountTokenRefused('keys_unavailable', `OIDC discovery at ${url} failed: ${(err as Error).message}`);
    }
  }

  private failed(key: string): void {
    bounded(this.failedUntil).set(key, Date.now() + ISSUER_FAILURE_COOLDOWN_MS);
  }
}

/** What is fetched, and how: one cache entry per issuer, key location, CA bundle and address policy. */
const cacheKey = (i: KubernetesIdentity) =>
  JSON.stringify([i.issuer, i.jwksUri ?? null, i.caCert ?? null, i.allowPrivateAddresses === true]);

function bounded<M extends Map<string, unknown>>(map: M): M {
  if (map.size >= MAX_CACHED) map.delete(map.keys().next().value!);
  return map;
}

/**
 * The claims checked on the unverified token, before any key is fetched: a token that names
 * another issuer, audience or service account, or has expired, is refused without a request.
 * (jwtVerify checks them all again once the signature is verified.)
 */
function precheck(token: string, issuer: string, audience: string, subject: string): void {
  let claims: JWTPayload;
  try {
    claims = decodeJwt(token);
  } catch {
    throw new ServiceAccountTokenRefused('malformed', 'not a JWT');
  }
  if (claims.iss !== issuer) throw new ServiceAccountTokenRefused('wrong_issuer', 'the token was issued by another issuer');
  const aud = typeof claims.aud === 'string' ? [claims.aud] : (claims.aud ?? []);
  if (!aud.includes(audience)) throw new ServiceAccountTokenRefused('wrong_audience', 'the token is not for the Sigil audience');
  if (claims.sub !== subject) throw new ServiceAccountTokenRefused('wrong_service_account', `the token is not for ${subject}`);
  if (typeof claims.exp !== 'number' || claims.exp + CLOCK_TOLERANCE_S <= Date.now() / 1000)
    throw new ServiceAccountTokenRefused('expired', 'the service-account token has expired');
}

function refusal(err: unknown): ServiceAccountTokenRefused {
  if (err instanceof errors.JWTExpired) return new ServiceAccountTokenRefused('expired', 'the service-account token has expired');
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'iss') return new ServiceAccountTokenRefused('wrong_issuer', 'the token was issued by another issuer');
    if (err.claim === 'aud') return new ServiceAccountTokenRefused('wrong_audience', 'the token is not for the Sigil audience');
    if (err.claim === 'nbf') return new ServiceAccountTokenRefused('expired', 'the token is not valid yet');
    return new ServiceAccountTokenRefused('malformed', `the token's ${err.claim} claim is missing or invalid`);
  }
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWSSignatureVerificationFailed)
    return new ServiceAccountTokenRefused('bad_signature', 'the token signature does not verify with the issuer’s keys');
  if (err instanceof errors.JWKSTimeout || !(err instanceof errors.JOSEError))
    return new ServiceAccountTokenRefused('keys_unavailable', `the issuer's keys could not be fetched: ${(err as Error).message}`);
  if (err instanceof errors.JWKSInvalid || err instanceof errors.JOSENotSupported)
    return new ServiceAccountTokenRefused('keys_unavailable', `the issuer's keys are unusable: ${err.message}`);
  return new ServiceAccountTokenRefused('malformed', `not a valid signed JWT (${err.code})`);
}
