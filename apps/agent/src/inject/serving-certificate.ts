import { isIP } from 'node:net';

/** A key pair and its certificate, in PEM. */
export interface KeyAndCertificate {
  keyPem: string;
  certificatePem: string;
  notAfter: Date;
}

/** How long the injection port's authority lives: it is what webhooks and pinned pods trust. */
export const AUTHORITY_DAYS = 3_650;
/** How long a serving certificate lives; it is renewed in place at two thirds of that. */
export const SERVING_DAYS = 90;

/**
 * The injection port's trust, made in memory: the keys never leave the process (not in a Secret,
 * so not in etcd; the sealed injection cache may keep them, docs/injection.md). A long-lived
 * authority goes into the webhook's caBundle and into each injected pod; the port presents a
 * short-lived serving certificate it signed, renewed without a restart, so neither the webhook
 * nor a running sidecar ever sees the trust change. @peculiar/x509 is loaded only here, when
 * injection is on (its resident cost, docs/decisions/007).
 */
export async function createServingAuthority(names: string[], days = AUTHORITY_DAYS): Promise<KeyAndCertificate> {
  const { x509, webcrypto } = await load();
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
  const now = Date.now();
  const notAfter = new Date(now + days * 86_400_000);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(webcrypto),
    name: `CN=${names[0] ?? 'sigil-agent-inject'} authority, O=Sigil agent`,
    notBefore: new Date(now - 60_000),
    notAfter,
    keys: keys as never,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { keyPem: await pkcs8Pem(webcrypto, keys.privateKey), certificatePem: cert.toString('pem') + '\n', notAfter };
}

/** A serving certificate for `names` (DNS names or IPs) signed by `authority`. */
export async function issueServingCertificate(
  authority: Pick<KeyAndCertificate, 'keyPem' | 'certificatePem'>,
  names: string[],
  days = SERVING_DAYS,
): Promise<KeyAndCertificate> {
  const { x509, webcrypto } = await load();
  const ca = new x509.X509Certificate(authority.certificatePem);
  const caKey = await webcrypto.subtle.importKey('pkcs8', pemBody(authority.keyPem), ALG, false, ['sign']);
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
  const now = Date.now();
  const notAfter = new Date(Math.min(now + days * 86_400_000, ca.notAfter.getTime()));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(webcrypto),
    subject: `CN=${names[0] ?? 'sigil-agent-inject'}, O=Sigil agent`,
    issuer: ca.subject,
    notBefore: new Date(now - 60_000),
    notAfter,
    publicKey: keys.publicKey as never,
    signingKey: caKey as never,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      await x509.AuthorityKeyIdentifierExtension.create(ca, false),
      new x509.SubjectAlternativeNameExtension(
        names.map((n) => (isIP(n) ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n })),
        false,
      ),
    ],
  });
  return { keyPem: await pkcs8Pem(webcrypto, keys.privateKey), certificatePem: cert.toString('pem') + '\n', notAfter };
}

/** When a certificate valid from `notBefore` to `notAfter` is renewed: two thirds into its life. */
export const renewalAt = (notBefore: Date, notAfter: Date): Date =>
  new Date(notBefore.getTime() + ((notAfter.getTime() - notBefore.getTime()) * 2) / 3);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };

type X509 = typeof import('@peculiar/x509');
type WebCrypto = typeof import('node:crypto').webcrypto;

async function load(): Promise<{ x509: X509; webcrypto: WebCrypto }> {
  const loaded = (await import('@peculiar/x509')) as X509 & { default?: X509 };
  // In the agent's bundle this is sigil-agent-x509.cjs beside it (.ci/build.mjs): a CommonJS
  // file whose import() namespace carries the library as `default` only.
  const x509 = loaded.cryptoProvider ? loaded : loaded.default!;
  const { webcrypto } = await import('node:crypto');
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  return { x509, webcrypto };
}

/** 16 random bytes, the first below 0x80 (a positive DER integer). */
const serial = (webcrypto: WebCrypto) =>
  Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)))
    .toString('hex')
    .replace(/^[89a-f]/, '7');

async function pkcs8Pem(webcrypto: WebCrypto, key: import('node:crypto').webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  try {
    const lines = der
      .toString('base64')
      .replace(/(.{64})/g, '$1\n')
      .replace(/\n$/, '');
    return `-----BEGIN PRIVATE KEY-----\n${lines}\n-----END PRIVATE KEY-----\n`;
  } finally {
    der.fill(0);
  }
}

function pemBody(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----(BEGIN|END) [A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
}
