import { Injectable } from '@nestjs/common';
import { createLocalJWKSet, createRemoteJWKSet, customFetch, errors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { serviceAccountSubject, type KubernetesIdentity } from '../clusters/kubernetes-identity.js';
import { httpsGet } from './https-get.js';

/** Why a service-account token was refused; logged and audited, and told to the agent. */
export type TokenRefusal =
  'malformed' | 'bad_signature' | 'expired' | 'wrong_issuer' | 'wrong_audience' | 'wrong_service_account' | 'keys_unavailable';

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
const MAX_KEY_SETS = 2_000;

/**
 * Verifies a projected service-account token against the cluster's registered identity: the
 * signature with the issuer's JWKS (inline, fetched, or found by OIDC discovery), `iss`, `aud`
 * (the Sigil audience), `exp`/`nbf`, and `sub` naming the one allowed service account.
 * Fetched key sets are cached by jose (refetched when a token names an unknown key).
 */
@Injectable()
export class ServiceAccountTokenVerifier {
  private readonly keySets = new Map<string, JWTVerifyGetKey>();

  async verify(token: string, identity: KubernetesIdentity, audience: string): Promise<void> {
    const keys = await this.keySet(identity);
    let payload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        issuer: identity.issuer,
        audience,
        algorithms: ALGORITHMS,
        requiredClaims: ['exp', 'sub'],
        clockTolerance: 30,
      }));
    } catch (err) {
      throw refusal(err);
    }
    const expected = serviceAccountSubject(identity.serviceAccount);
    if (payload.sub !== expected) {
      throw new ServiceAccountTokenRefused('wrong_service_account', `the token is for ${JSON.stringify(payload.sub)}, not ${expected}`);
    }
  }

  private async keySet(identity: KubernetesIdentity): Promise<JWTVerifyGetKey> {
    if (identity.jwks) return createLocalJWKSet(identity.jwks);
    const jwksUri = identity.jwksUri ?? (await this.discover(identity));
    const cacheKey = JSON.stringify([jwksUri, identity.caCert ?? null]);
    let set = this.keySets.get(cacheKey);
    if (!set) {
      if (this.keySets.size >= MAX_KEY_SETS) this.keySets.delete(this.keySets.keys().next().value!);
      set = createRemoteJWKSet(new URL(jwksUri), {
        timeoutDuration: 5_000,
        cooldownDuration: 30_000,
        cacheMaxAge: 10 * 60_000,
        [customFetch]: async (url, o) => {
          const res = await httpsGet(url, { ca: identity.caCert, signal: o.signal });
          if (res.status !== 200) throw new Error(`GET ${url} answered HTTP ${res.status}`);
          return res;
        },
      });
      this.keySets.set(cacheKey, set);
    }
    return set;
  }

  /** OIDC discovery: the issuer's /.well-known/openid-configuration names its jwks_uri. */
  private async discover(identity: KubernetesIdentity): Promise<string> {
    const url = `${identity.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
    try {
      const res = await httpsGet(url, { ca: identity.caCert });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const doc = (await res.json()) as { jwks_uri?: unknown };
      if (typeof doc.jwks_uri !== 'string' || !doc.jwks_uri.startsWith('https://')) throw new Error('no https jwks_uri');
      return doc.jwks_uri;
    } catch (err) {
      throw new ServiceAccountTokenRefused('keys_unavailable', `OIDC discovery at ${url} failed: ${(err as Error).message}`);
    }
  }
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
