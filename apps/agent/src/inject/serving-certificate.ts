import { isIP } from 'node:net';

export interface ServingCertificate {
  keyPem: string;
  certificatePem: string;
  notAfter: Date;
}

/**
 * A self-signed serving certificate for the injection port, made in memory at start: the key
 * never leaves the process (not in a Secret, so not in etcd). The certificate itself is the
 * trust anchor: it goes into the webhook configuration's caBundle and into each injected pod.
 * @peculiar/x509 is loaded only here, when injection is on (its resident cost, docs/decisions/007).
 */
export async function createServingCertificate(names: string[], days = 365): Promise<ServingCertificate> {
  type X509 = typeof import('@peculiar/x509');
  const loaded = (await import('@peculiar/x509')) as X509 & { default?: X509 };
  // In the agent's bundle this is sigil-agent-x509.cjs beside it (.ci/build.mjs): a CommonJS
  // file whose import() namespace carries the library as `default` only.
  const x509 = loaded.cryptoProvider ? loaded : loaded.default!;
  const { webcrypto } = await import('node:crypto');
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const now = Date.now();
  const notAfter = new Date(now + days * 86_400_000);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)))
      .toString('hex')
      .replace(/^[89a-f]/, '7'),
    name: `CN=${names[0] ?? 'sigil-agent-inject'}, O=Sigil agent`,
    notBefore: new Date(now - 60_000),
    notAfter,
    keys: keys as never,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.SubjectAlternativeNameExtension(
        names.map((n) => (isIP(n) ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n })),
        false,
      ),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '')}\n-----END PRIVATE KEY-----\n`;
  pkcs8.fill(0);
  return { keyPem, certificatePem: cert.toString('pem') + '\n', notAfter };
}
