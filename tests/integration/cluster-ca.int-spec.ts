import 'reflect-metadata';
import { X509Certificate, webcrypto } from 'node:crypto';
import { once } from 'node:events';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as x509 from '@peculiar/x509';
import { ClusterCertificateAuthority, clusterUri } from '../../apps/control-plane/src/enrollment/cluster-ca.service.js';
import { startTestApp, type TestApp } from '../harness/app-context.js';
import { selfSigned } from '../harness/certificates.js';
import { listTokenObjects } from '../harness/pkcs11-tool.js';

const ECDSA = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const pem = (der: ArrayBuffer | Buffer, label: string) =>
  `-----BEGIN ${label}-----\n${Buffer.from(der as ArrayBuffer)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')}\n-----END ${label}-----\n`;

/** What an agent does: a key pair that stays with it, and a CSR for it. */
async function agentCsr(cn = 'agent'): Promise<{ csrDer: Buffer; keyPem: string }> {
  const keys = await webcrypto.subtle.generateKey(ECDSA, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: `CN=${cn}`, keys: keys as never, signingAlgorithm: ECDSA });
  return { csrDer: Buffer.from(csr.rawData), keyPem: pem(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY') };
}

/** An mTLS server that trusts only the cluster CA; resolves with what it saw of the client. */
async function mtls(caPem: string, client: { cert: string; key: string }): Promise<{ authorized: boolean; cn?: string; error?: string }> {
  const server = selfSigned('127.0.0.1');
  const srv = tls.createServer({ ...server, ca: caPem, requestCert: true, rejectUnauthorized: true });
  const seen = new Promise<{ authorized: boolean; cn?: string }>((resolve) =>
    srv.on('secureConnection', (s) => {
      resolve({ authorized: s.authorized, cn: s.getPeerCertificate().subject?.CN as string | undefined });
      s.end('ok');
    }),
  );
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as { port: number };
  try {
    const socket = tls.connect({ host: '127.0.0.1', port, ...client, rejectUnauthorized: false });
    const outcome = await Promise.race([
      seen,
      new Promise<{ authorized: boolean; error: string }>((resolve) => {
        socket.on('error', (e) => resolve({ authorized: false, error: e.message }));
        socket.on('close', () => resolve({ authorized: false, error: 'closed' }));
      }),
    ]);
    socket.destroy();
    return outcome;
  } finally {
    srv.close();
  }
}

describe('cluster CA with its key in the HSM', () => {
  let t: TestApp;
  let ca: ClusterCertificateAuthority;
  let caCert: X509Certificate;

  beforeAll(async () => {
    t = await startTestApp();
    ca = t.app.get(ClusterCertificateAuthority);
    caCert = new X509Certificate(Buffer.from((await ca.certificate()).rawData));
  });
  afterAll(async () => {
    await t.dispose();
  });

  it('is a self-signed CA certificate whose private key is a non-extractable HSM object', () => {
    expect(caCert.ca).toBe(true);
    expect(caCert.verify(caCert.publicKey)).toBe(true);
    expect(caCert.subject).toContain('CN=Sigil cluster CA');
    const key = listTokenObjects().find((o) => o.label === `${t.keyLabelPrefix}-ca-v1` && o.kind.startsWith('Private Key Object'));
    expect(key).toBeDefined();
    expect(key!.access).toEqual(expect.arrayContaining(['sensitive', 'always sensitive', 'never extractable', 'local']));
  });

  it('issues a short-lived client certificate naming the cluster, from a CSR (the agent keeps its key)', async () => {
    const { csrDer } = await agentCsr();
    const issued = await ca.issueClientCertificate({
      csrDer,
      clusterId: '6b1f0c1e-0000-4000-8000-000000000001',
      clusterName: 'store-0042',
      ttlSeconds: 3600,
    });
    const cert = new X509Certificate(issued.certificateDer);
    expect(cert.checkIssued(caCert)).toBe(true);
    expect(cert.verify(caCert.publicKey)).toBe(true);
    expect(cert.ca).toBe(false);
    expect(cert.subject).toContain('CN=store-0042');
    expect(cert.subjectAltName).toBe(`URI:${clusterUri('6b1f0c1e-0000-4000-8000-000000000001')}`);
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']); // clientAuth only
    const lifetime = new Date(cert.validTo).getTime() - Date.now();
    expect(lifetime).toBeGreaterThan(3500_000);
    expect(lifetime).toBeLessThanOrEqual(3600_000);
  });

  it('is accepted in a real mTLS handshake by a server trusting the cluster CA; another CA is refused', async () => {
    const { csrDer, keyPem } = await agentCsr();
    const issued = await ca.issueClientCertificate({ csrDer, clusterId: '6b1f0c1e-0000-4000-8000-000000000002', clusterName: 'store-7' });
    const caPem = caCert.toString();
    expect(await mtls(caPem, { cert: pem(issued.certificateDer, 'CERTIFICATE'), key: keyPem })).toEqual({
      authorized: true,
      cn: 'store-7',
    });
    const impostor = selfSigned('store-7');
    expect((await mtls(caPem, impostor)).authorized).toBe(false);
  });

  it('refuses a CSR that is not one, or whose signature does not verify', async () => {
    await expect(ca.issueClientCertificate({ csrDer: Buffer.from('nope'), clusterId: 'x', clusterName: 'x' })).rejects.toMatchObject({
      code: 'invalid_csr',
    });
    const { csrDer } = await agentCsr();
    const tampered = Buffer.from(csrDer);
    tampered[tampered.length - 5]! ^= 0xff;
    await expect(ca.issueClientCertificate({ csrDer: tampered, clusterId: 'x', clusterName: 'x' })).rejects.toMatchObject({
      code: 'invalid_csr',
    });
  });

  it('keeps the same CA across restarts', async () => {
    await t.close();
    const again = await startTestApp({ reuse: t });
    try {
      const cert = new X509Certificate(Buffer.from((await again.app.get(ClusterCertificateAuthority).certificate()).rawData));
      expect(cert.fingerprint256).toBe(caCert.fingerprint256);
    } finally {
      await again.close();
    }
  });
});
