import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, webcrypto } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from '@jest/globals';
import * as x509 from '@peculiar/x509';
import { createCsr } from './csr.js';

x509.cryptoProvider.set(webcrypto as never);

describe('createCsr (PKCS#10 with node:crypto)', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });

  it('is a request @peculiar/x509 parses and verifies, for the right key and subject', async () => {
    const csr = new x509.Pkcs10CertificateRequest(createCsr('eu-west-store-0042', privateKey));
    expect(await csr.verify()).toBe(true);
    expect(csr.subject).toBe('CN=eu-west-store-0042');
    expect(Buffer.from(csr.publicKey.rawData)).toEqual(publicKey.export({ type: 'spki', format: 'der' }));
  });

  it('is a request OpenSSL verifies', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sigil-csr-'));
    writeFileSync(path.join(dir, 'csr.der'), createCsr('c-1', privateKey));
    const out = execFileSync('openssl', ['req', '-inform', 'DER', '-in', path.join(dir, 'csr.der'), '-noout', '-verify', '-subject'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    expect(out.replace(/ /g, '')).toContain('subject=CN=c-1'); // OpenSSL 3 spaces it as "CN = c-1"
  });

  it('refuses keys other than P-256', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    expect(() => createCsr('x', rsa)).toThrow('EC P-256');
  });
});
