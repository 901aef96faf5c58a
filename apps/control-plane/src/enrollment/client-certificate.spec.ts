import 'reflect-metadata'; // @peculiar/x509 (used here to make reference CSRs) needs it loaded first
import { createPublicKey, generateKeyPairSync, sign, webcrypto, X509Certificate } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import * as x509 from '@peculiar/x509';
import { createTlsKeyAndCsr } from '@sigil/agent-protocol';
import { ClientCertificateTemplate, CsrRejected, randomSerial, verifyCsr } from './client-certificate.js';

x509.cryptoProvider.set(webcrypto as never);

type KeyGen = webcrypto.RsaHashedKeyGenParams | webcrypto.EcKeyGenParams;
type Signing = x509.Pkcs10CertificateRequestCreateParams['signingAlgorithm'];

const peculiarCsr = async (algorithm: KeyGen, signing: Signing) => {
  const keys = await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify']);
  return Buffer.from(
    (await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=agent', keys: keys as never, signingAlgorithm: signing })).rawData,
  );
};

describe('verifyCsr', () => {
  it('accepts the agent’s P-256 CSR and returns its key as canonical SPKI DER', () => {
    const { keyPem, csrDer } = createTlsKeyAndCsr('agent');
    expect(verifyCsr(csrDer).spkiDer.equals(createPublicKey(keyPem).export({ type: 'spki', format: 'der' }))).toBe(true);
  });

  it('accepts RSA ≥ 2048 and P-384 CSRs made by another library', async () => {
    const rsa = await peculiarCsr(
      { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
      { name: 'RSASSA-PKCS1-v1_5' },
    );
    const p384 = await peculiarCsr({ name: 'ECDSA', namedCurve: 'P-384' }, { name: 'ECDSA', hash: 'SHA-384' });
    expect(() => verifyCsr(rsa)).not.toThrow();
    expect(() => verifyCsr(p384)).not.toThrow();
  });

  it('refuses a CSR whose signature does not match, a P-521 key, and bytes that are no CSR', async () => {
    const csr = createTlsKeyAndCsr('agent').csrDer;
    const tampered = Buffer.from(csr);
    tampered[csr.indexOf('agent')]! ^= 1; // the subject's CN: still a CSR, but not the one signed
    expect(() => verifyCsr(tampered)).toThrow('the CSR signature does not verify');
    const p521 = await peculiarCsr({ name: 'ECDSA', namedCurve: 'P-521' }, { name: 'ECDSA', hash: 'SHA-512' });
    expect(() => verifyCsr(p521)).toThrow('ECDSA P-256/P-384 or RSA');
    for (const junk of [Buffer.from('not a csr'), Buffer.concat([csr, Buffer.from([0])]), Buffer.alloc(0)]) {
      expect(() => verifyCsr(junk)).toThrow(CsrRejected);
    }
  });
});

describe('ClientCertificateTemplate', () => {
  it('builds a clientAuth certificate that verifies under the CA key, naming the cluster, for the CSR’s key', async () => {
    const caKeys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const ca = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: '01',
      name: 'CN=Sigil cluster CA, O=Sigil',
      keys: caKeys as never,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey)],
    });
    const caPrivate = await webcrypto.subtle.exportKey('pkcs8', caKeys.privateKey);
    const template = new ClientCertificateTemplate(Buffer.from(ca.rawData));
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const spkiDer = publicKey.export({ type: 'spki', format: 'der' });
    const notBefore = new Date(Math.floor(Date.now() / 1000) * 1000);
    const notAfter = new Date(notBefore.getTime() + 3600_000);
    const caCert = new X509Certificate(Buffer.from(ca.rawData));
    // Many signatures: r and s with and without their top bit set are both encoded right.
    for (let i = 0; i < 40; i++) {
      const tbs = template.toBeSigned({
        serial: randomSerial(),
        notBefore,
        notAfter,
        commonName: 'edge-1',
        spkiDer,
        uri: 'urn:sigil:cluster:x',
      });
      const signature = sign('sha256', tbs, { key: Buffer.from(caPrivate), format: 'der', type: 'pkcs8', dsaEncoding: 'ieee-p1363' });
      const cert = new X509Certificate(template.assemble(tbs, signature));
      expect(cert.verify(caCert.publicKey)).toBe(true);
      expect(cert.checkIssued(caCert)).toBe(true);
      expect(cert.subject).toBe('CN=edge-1\nO=Sigil clusters');
      expect(cert.subjectAltName).toBe('URI:urn:sigil:cluster:x');
      expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
      expect(cert.ca).toBe(false);
      expect(new Date(cert.validFrom).getTime()).toBe(notBefore.getTime());
      expect(new Date(cert.validTo).getTime()).toBe(notAfter.getTime());
      expect(cert.publicKey.export({ type: 'spki', format: 'der' }).equals(spkiDer)).toBe(true);
      const parsed = new x509.X509Certificate(cert.raw);
      expect(parsed.extensions.map((e) => `${e.type}${e.critical ? '!' : ''}`)).toEqual([
        '2.5.29.19!', // basic constraints: not a CA
        '2.5.29.15!', // key usage: digitalSignature
        '2.5.29.37',
        '2.5.29.35', // authority key identifier = the CA's subject key identifier
        '2.5.29.17',
      ]);
    }
  });
});
