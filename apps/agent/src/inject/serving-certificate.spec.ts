import 'reflect-metadata'; // @peculiar/x509's tsyringe needs it; the agent's x509 bundle carries its own (.ci/build.mjs)
import { describe, expect, it } from '@jest/globals';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { createServingAuthority, issueServingCertificate, renewalAt, SERVING_DAYS } from './serving-certificate.js';

/** The certificate a TLS client trusting only `caPem` sees on `port`, or the error it gets. */
async function handshake(port: number, caPem: string, servername: string): Promise<X509Certificate> {
  const socket: TLSSocket = connect({ port, host: '127.0.0.1', ca: caPem, servername });
  try {
    await once(socket, 'secureConnect');
    return socket.getPeerX509Certificate()!;
  } finally {
    socket.destroy();
  }
}

describe('the injection port’s authority and serving certificates', () => {
  it('signs short-lived serving certificates that a client trusting only the authority accepts, before and after a renewal', async () => {
    const names = ['agent-inject.sigil.svc', '127.0.0.1'];
    const authority = await createServingAuthority(names);
    const ca = new X509Certificate(authority.certificatePem);
    expect(ca.ca).toBe(true);
    expect(ca.checkIssued(ca)).toBe(true);

    const first = await issueServingCertificate(authority, names);
    const leaf = new X509Certificate(first.certificatePem);
    expect(leaf.ca).toBe(false);
    expect(leaf.checkIssued(ca)).toBe(true);
    expect(leaf.verify(ca.publicKey)).toBe(true);
    expect(leaf.subjectAltName).toBe('DNS:agent-inject.sigil.svc, IP Address:127.0.0.1');
    const lifeDays = (new Date(leaf.validTo).getTime() - new Date(leaf.validFrom).getTime()) / 86_400_000;
    expect(Math.round(lifeDays)).toBe(SERVING_DAYS);

    const server = createServer({ key: first.keyPem, cert: first.certificatePem }, (s) => s.end());
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as { port: number };
    try {
      expect((await handshake(port, authority.certificatePem, names[0]!)).fingerprint256).toBe(leaf.fingerprint256);
      const second = await issueServingCertificate(authority, names);
      server.setSecureContext({ key: second.keyPem, cert: second.certificatePem });
      const renewed = await handshake(port, authority.certificatePem, names[0]!);
      expect(renewed.fingerprint256).toBe(new X509Certificate(second.certificatePem).fingerprint256);
      expect(renewed.fingerprint256).not.toBe(leaf.fingerprint256);
      // Another authority's trust is refused: the pin is the authority, not any certificate.
      const other = await createServingAuthority(names);
      await expect(handshake(port, other.certificatePem, names[0]!)).rejects.toThrow();
    } finally {
      server.close();
    }
  });

  it('never outlives its authority, and is renewed two thirds into its life', async () => {
    const authority = await createServingAuthority(['a'], 10);
    const leaf = await issueServingCertificate(authority, ['a'], 90);
    expect(leaf.notAfter.getTime()).toBeLessThanOrEqual(authority.notAfter.getTime());
    expect(renewalAt(new Date('2026-01-01T00:00:00Z'), new Date('2026-04-01T00:00:00Z')).toISOString()).toBe('2026-03-02T00:00:00.000Z');
  });
});
