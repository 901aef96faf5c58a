import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import { beforeAll, describe, expect, it } from '@jest/globals';
import * as x509 from '@peculiar/x509';
import { SECRET_TYPES, typeProblems } from './secret-types.js';

const data = (entries: Record<string, string>) => new Map(Object.entries(entries).map(([k, v]) => [k, Buffer.from(v)]));
const pem = (der: ArrayBuffer, label: string) =>
  `-----BEGIN ${label}-----\n${Buffer.from(der)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')}\n-----END ${label}-----\n`;

const ECDSA = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };

/** A self-signed certificate and its key, and a key of another pair. */
async function tlsPair(): Promise<{ cert: string; key: string; otherKey: string }> {
  const keys = await webcrypto.subtle.generateKey(ECDSA, true, ['sign', 'verify']);
  const other = await webcrypto.subtle.generateKey(ECDSA, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=sigil-test',
    keys: keys as never,
    signingAlgorithm: ECDSA,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
  });
  return {
    cert: cert.toString('pem'),
    key: pem(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY'),
    otherKey: pem(await webcrypto.subtle.exportKey('pkcs8', other.privateKey), 'PRIVATE KEY'),
  };
}

describe('typeProblems: what each Kubernetes Secret type requires of its keys', () => {
  let tls: Awaited<ReturnType<typeof tlsPair>>;
  beforeAll(async () => {
    tls = await tlsPair();
  });

  it('Opaque takes any keys', () => {
    expect(typeProblems('Opaque', data({}))).toEqual([]);
    expect(typeProblems('Opaque', data({ anything: 'x' }))).toEqual([]);
  });

  it('kubernetes.io/tls needs tls.crt and tls.key, a real certificate, and the key that matches it', () => {
    expect(typeProblems('kubernetes.io/tls', data({ 'tls.crt': tls.cert, 'tls.key': tls.key }))).toEqual([]);
    expect(typeProblems('kubernetes.io/tls', data({}))).toEqual([
      { field: 'data.tls.crt', problem: 'is required for type kubernetes.io/tls' },
      { field: 'data.tls.key', problem: 'is required for type kubernetes.io/tls' },
    ]);
    expect(typeProblems('kubernetes.io/tls', data({ 'tls.crt': 'not a cert', 'tls.key': tls.key }))).toEqual([
      { field: 'data.tls.crt', problem: 'must be a PEM-encoded X.509 certificate' },
    ]);
    expect(typeProblems('kubernetes.io/tls', data({ 'tls.crt': tls.cert, 'tls.key': 'not a key' }))).toEqual([
      { field: 'data.tls.key', problem: 'must be a PEM-encoded private key' },
    ]);
    expect(typeProblems('kubernetes.io/tls', data({ 'tls.crt': tls.cert, 'tls.key': tls.otherKey }))).toEqual([
      { field: 'data.tls.key', problem: 'does not match the certificate in tls.crt' },
    ]);
  });

  it('kubernetes.io/dockerconfigjson needs .dockerconfigjson: JSON with an "auths" object', () => {
    const t = 'kubernetes.io/dockerconfigjson';
    expect(typeProblems(t, data({ '.dockerconfigjson': '{"auths":{"registry.example":{"auth":"eA=="}}}' }))).toEqual([]);
    expect(typeProblems(t, data({}))).toEqual([{ field: 'data..dockerconfigjson', problem: `is required for type ${t}` }]);
    expect(typeProblems(t, data({ '.dockerconfigjson': '{' }))).toEqual([
      { field: 'data..dockerconfigjson', problem: 'must be valid JSON' },
    ]);
    for (const bad of ['[]', 'null', '{"auths":1}', '{}'])
      expect(typeProblems(t, data({ '.dockerconfigjson': bad }))).toEqual([
        { field: 'data..dockerconfigjson', problem: 'must be a JSON object with an "auths" object' },
      ]);
  });

  it('kubernetes.io/basic-auth needs a username or a password; ssh-auth needs ssh-privatekey', () => {
    expect(typeProblems('kubernetes.io/basic-auth', data({ username: 'u' }))).toEqual([]);
    expect(typeProblems('kubernetes.io/basic-auth', data({ password: 'p' }))).toEqual([]);
    expect(typeProblems('kubernetes.io/basic-auth', data({ other: 'x' }))).toEqual([
      { field: 'data', problem: 'type kubernetes.io/basic-auth needs username or password' },
    ]);
    expect(typeProblems('kubernetes.io/ssh-auth', data({ 'ssh-privatekey': 'k' }))).toEqual([]);
    expect(typeProblems('kubernetes.io/ssh-auth', data({}))).toEqual([
      { field: 'data.ssh-privatekey', problem: 'is required for type kubernetes.io/ssh-auth' },
    ]);
  });

  it('refuses any other type, naming the ones it takes', () => {
    for (const t of ['kubernetes.io/service-account-token', 'opaque', ''])
      expect(typeProblems(t, data({}))).toEqual([{ field: 'type', problem: `must be one of ${SECRET_TYPES.join(', ')}` }]);
  });

  it('names keys in its problems, never values', () => {
    const value = 'super-secret-value-123';
    const problems = [
      ...typeProblems('kubernetes.io/tls', data({ 'tls.crt': value, 'tls.key': value })),
      ...typeProblems('kubernetes.io/dockerconfigjson', data({ '.dockerconfigjson': value })),
    ];
    expect(problems.length).toBeGreaterThan(0);
    expect(JSON.stringify(problems)).not.toContain(value);
  });
});
