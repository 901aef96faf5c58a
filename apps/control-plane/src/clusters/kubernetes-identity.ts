import { X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { dns1123LabelProblem, dns1123SubdomainProblem } from '../common/kubernetes-names.js';

/**
 * How a cluster's agent can enroll without a shared secret: with a projected service-account
 * token that the cluster's own API server signed. The control plane checks the signature
 * against the issuer's JWKS, the issuer, the audience, the expiry and the service account.
 */
export interface KubernetesIdentity {
  /** The `iss` the cluster's API server puts in its tokens (--service-account-issuer). */
  issuer: string;
  /** Where to fetch the issuer's JWKS (https). Without it and without `jwks`: OIDC discovery. */
  jwksUri?: string;
  /** The JWKS itself, for issuers the control plane cannot reach. */
  jwks?: { keys: Array<Record<string, unknown>> };
  /** PEM bundle trusted for `jwksUri`/discovery instead of the system roots. */
  caCert?: string;
  /** The only service account allowed to enroll. */
  serviceAccount: { namespace: string; name: string };
  /**
   * Lets discovery and JWKS fetches reach loopback, private and link-local addresses (an issuer
   * inside the centre's own network). Off by default: Enroll is unauthenticated, and what it
   * fetches must not be a way into the internal network. Set by an admin (clusters:write).
   */
  allowPrivateAddresses?: boolean;
}

const httpsUrl = z
  .string()
  .max(2048)
  .refine((v) => {
    try {
      return new URL(v).protocol === 'https:';
    } catch {
      return false;
    }
  }, 'must be an https:// URL');

const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'];

const jwk = z
  .object({ kty: z.enum(['RSA', 'EC', 'OKP']), kid: z.string().max(256).optional() })
  .catchall(z.unknown())
  .refine((k) => !PRIVATE_JWK_MEMBERS.some((m) => m in k), 'must hold public keys only');

const pemBundle = z
  .string()
  .max(64 * 1024)
  .refine((v) => {
    const blocks = v.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    if (blocks.length === 0) return false;
    try {
      blocks.forEach((b) => new X509Certificate(b));
      return true;
    } catch {
      return false;
    }
  }, 'must be a PEM bundle of one or more certificates');

export const kubernetesIdentitySchema = z
  .object({
    issuer: z.string().min(1).max(2048),
    jwksUri: httpsUrl.optional(),
    jwks: z
      .object({ keys: z.array(jwk).min(1).max(32) })
      .strict()
      .optional(),
    caCert: pemBundle.optional(),
    serviceAccount: z
      .object({
        namespace: z.string().refine((v) => !dns1123LabelProblem(v), 'must be a DNS-1123 label'),
        name: z.string().refine((v) => !dns1123SubdomainProblem(v), 'must be a DNS-1123 subdomain'),
      })
      .strict(),
    allowPrivateAddresses: z.boolean().optional(),
  })
  .strict()
  .refine((v) => !(v.jwks && v.jwksUri), { message: 'give jwks or jwksUri, not both', path: ['jwksUri'] })
  .refine((v) => v.jwks !== undefined || v.jwksUri !== undefined || httpsUrl.safeParse(v.issuer).success, {
    message: 'must be an https:// URL when neither jwks nor jwksUri is given (OIDC discovery)',
    path: ['issuer'],
  });

/** undefined when valid, else "<field> <problem>". */
export function kubernetesIdentityProblem(v: unknown): string | undefined {
  const r = kubernetesIdentitySchema.safeParse(v);
  if (r.success) return undefined;
  const issue = r.error.issues[0]!;
  const field = issue.path.length ? issue.path.join('.') : '';
  return `${field ? `${field} ` : ''}${issue.message}`.trim();
}

/** The `sub` Kubernetes puts in a service account's tokens. */
export const serviceAccountSubject = (sa: KubernetesIdentity['serviceAccount']) => `system:serviceaccount:${sa.namespace}:${sa.name}`;
