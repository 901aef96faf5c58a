import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { credentials, type ChannelCredentials } from '@grpc/grpc-js';
import { createCsr } from './csr.js';

export const derToPem = (der: Uint8Array | ArrayBuffer, label: string): string =>
  `-----BEGIN ${label}-----\n${Buffer.from(der as ArrayBuffer)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')}\n-----END ${label}-----\n`;

/**
 * The agent's TLS key (P-256, made where the agent runs and never sent anywhere) and a CSR for
 * it. The control plane puts the cluster's identity into the certificate; the CSR's subject is
 * only informative.
 */
export function createTlsKeyAndCsr(commonName: string): { keyPem: string; csrDer: Buffer } {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, csrDer: createCsr(commonName, privateKey) };
}

/** A CSR for an existing key (certificate renewal keeps the key). */
export function createCsrForKey(commonName: string, keyPem: string): Buffer {
  return createCsr(commonName, createPrivateKey(keyPem));
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
