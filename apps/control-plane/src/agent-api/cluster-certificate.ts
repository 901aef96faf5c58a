import { X509Certificate } from 'node:crypto';
import { spkiSha256 } from '../enrollment/cluster-ca.service.js';

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const CLUSTER_URI = /^URI:urn:sigil:cluster:([0-9a-f-]{36})$/;

/** A client certificate the cluster CA issued, naming one cluster. */
export interface ClusterCertificate {
  clusterId: string;
  /** SHA-256 of the certificate's public key (SPKI DER). */
  keySha256: Buffer;
  /** The window in which both the certificate and its issuing CA are valid (ms since the epoch). */
  notBefore: number;
  notAfter: number;
}

export type CertificateVerdict = { ok: true; cert: ClusterCertificate } | { ok: false; reason: 'untrusted' | 'not_a_cluster_certificate' };

/**
 * Verifies a peer's certificate (DER) in Sigil's own code, whatever the TLS library did: it must
 * be signed by one of the trusted cluster CA certificates (issuer name and signature), that CA
 * must be a CA, and the leaf must be an end-entity clientAuth
 * certificate naming exactly one cluster. The validity window is returned, not judged: it is
 * checked on every call, while the rest of the verdict is cached.
 */
export function verifyClusterCertificate(raw: Buffer, trusted: readonly X509Certificate[]): CertificateVerdict {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(raw);
  } catch {
    return { ok: false, reason: 'not_a_cluster_certificate' };
  }
  const issuer = trusted.find(
    (ca) =>
      ca.ca &&
      // checkIssued: issuer name = CA subject (and key identifiers, if both carry them)
      leaf.checkIssued(ca) &&
      leaf.verify(ca.publicKey),
  );
  if (!issuer) return { ok: false, reason: 'untrusted' };
  const uris = (leaf.subjectAltName ?? '')
    .split(', ')
    .map((n) => CLUSTER_URI.exec(n)?.[1])
    .filter((id) => id !== undefined);
  if (uris.length !== 1 || leaf.ca || !leaf.keyUsage?.includes(CLIENT_AUTH)) return { ok: false, reason: 'not_a_cluster_certificate' };
  return {
    ok: true,
    cert: {
      clusterId: uris[0]!,
      keySha256: spkiSha256(leaf.publicKey.export({ type: 'spki', format: 'der' })),
      notBefore: Math.max(Date.parse(leaf.validFrom), Date.parse(issuer.validFrom)),
      notAfter: Math.min(Date.parse(leaf.validTo), Date.parse(issuer.validTo)),
    },
  };
}
