import 'reflect-metadata'; // @peculiar/x509 uses tsyringe, which needs it loaded first
import { webcrypto } from 'node:crypto';
import { credentials, type ChannelCredentials } from '@grpc/grpc-js';
import * as x509 from '@peculiar/x509';

type Crypto = Parameters<typeof x509.cryptoProvider.set>[0];
x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const ECDSA_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };

export const derToPem = (der: Uint8Array | ArrayBuffer, label: string): string =>
  `-----BEGIN ${label}-----\n${Buffer.from(der as ArrayBuffer)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')}\n-----END ${label}-----\n`;

/**
 * The agent's TLS key (P-256, made where the agent runs and never sent anywhere) and a CSR for
 * it. The control plane puts the cluster's identity into the certificate; the CSR's subject is
 * only informative.
 */
export async function createTlsKeyAndCsr(commonName: string): Promise<{ keyPem: string; csrDer: Buffer }> {
  const keys = await webcrypto.subtle.generateKey(ECDSA_P256, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${commonName}`,
    keys: keys as never,
    signingAlgorithm: ECDSA_P256,
  });
  return {
    keyPem: derToPem(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY'),
    csrDer: Buffer.from(csr.rawData),
  };
}

/** A CSR for an existing key (certificate renewal keeps the key). */
export async function createCsrForKey(commonName: string, keyPem: string): Promise<Buffer> {
  const { createPrivateKey, createPublicKey } = await import('node:crypto');
  const priv = createPrivateKey(keyPem);
  const privateKey = await webcrypto.subtle.importKey('pkcs8', priv.export({ type: 'pkcs8', format: 'der' }), ECDSA_P256, false, ['sign']);
  const publicKey = await webcrypto.subtle.importKey(
    'spki',
    createPublicKey(priv).export({ type: 'spki', format: 'der' }),
    ECDSA_P256,
    true,
    ['verify'],
  );
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${commonName}`,
    keys: { privateKey, publicKey } as never,
    signingAlgorithm: ECDSA_P256,
  });
  return Buffer.from(csr.rawData);
}

/**
 * TLS to the control plane: the server must present a certificate from the Sigil CA (`caPem`);
 * with `client`, the agent's certificate is offered (every call but Enroll needs it).
 */
export function agentChannelCredentials(caPem: string, client?: { keyPem: string; certificatePem: string }): ChannelCredentials {
  return client
    ? credentials.createSsl(Buffer.from(caPem), Buffer.from(client.keyPem), Buffer.from(client.certificatePem))
    : credentials.createSsl(Buffer.from(caPem));
}
