import 'reflect-metadata'; // @peculiar/x509 uses tsyringe, which needs it loaded first
import { createHash, createPrivateKey, createPublicKey, webcrypto, X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { status } from '@grpc/grpc-js';
import * as x509 from '@peculiar/x509';
import { AgentServiceClient, agentChannelCredentials, derToPem } from '@sigil/agent-protocol';
import { AgentAuthenticator, type AgentCall } from '../../apps/control-plane/src/agent-api/agent-authenticator.js';
import { Actor } from '../../apps/control-plane/src/auth/policy.js';
import { ClustersService } from '../../apps/control-plane/src/clusters/clusters.service.js';
import { CA_SUBJECT, ClusterCertificateAuthority, clusterUri } from '../../apps/control-plane/src/enrollment/cluster-ca.service.js';
import { agentEndpoint, startTestApp, type TestApp } from '../harness/app-context.js';
import { uniqueName } from '../harness/test-env.js';
import { TestAgent, refused } from '../harness/test-agent.js';
import { syncRefusal } from '../harness/sync-session.js';

// The control plane verifies an agent's certificate chain itself, whatever the TLS library
// exposes. grpc-js 1.14.3 handed unverified peer certificates to getAuthContext(); the crafted
// calls below present certificates exactly as it would, and the mTLS calls present them for real.

const admin = new Actor('test', 'test-admin', 'admin', null);
const ECDSA = { name: 'ECDSA', hash: 'SHA-256' };
const P256 = { name: 'ECDSA', namedCurve: 'P-256' };

/** A call as grpc-js 1.14.3 would hand it over: the peer certificate, verified or not. */
const callPresenting = (der: Buffer): AgentCall => ({
  getAuthContext: () => ({
    transportSecurityType: 'ssl',
    sslPeerCertificate: {
      raw: der,
      fingerprint256: createHash('sha256')
        .update(der)
        .digest('hex')
        .toUpperCase()
        .replace(/(..)(?!$)/g, '$1:'),
    } as never,
  }),
  getPeer: () => '127.0.0.1:40000',
});

/** A clientAuth certificate shaped exactly like the cluster CA's, for `agent`'s key, signed by `signer`. */
async function lookalike(agent: TestAgent, signer: { subject: string; key: webcrypto.CryptoKey }, notAfter: Date): Promise<Buffer> {
  const spki = createPublicKey(agent.tls!.keyPem).export({ type: 'spki', format: 'der' });
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: '01a2b3c4d5',
    subject: `CN=${agent.cluster}, O=Sigil clusters`,
    issuer: signer.subject,
    notBefore: new Date(Date.now() - 60_000),
    notAfter,
    publicKey: new x509.PublicKey(spki),
    signingKey: signer.key as never,
    signingAlgorithm: ECDSA,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: clusterUri(agent.enrollment!.clusterId) }], false),
    ],
  });
  return Buffer.from(cert.rawData);
}

describe('agent client certificates are verified against the cluster CA by Sigil itself', () => {
  let t: TestApp;
  let auth: AgentAuthenticator;
  let endpoint: { address: string; caPem: string };
  let agent: TestAgent;
  /** Self-signed with the enrolled agent's own key, naming its cluster, valid until 2100. */
  let selfSigned: Buffer;
  /** From another CA that calls itself exactly what the Sigil CA is called. */
  let otherCa: Buffer;
  const clients: AgentServiceClient[] = [];

  beforeAll(async () => {
    t = await startTestApp();
    auth = t.app.get(AgentAuthenticator);
    endpoint = agentEndpoint(t.app);
    const clusters = t.app.get(ClustersService);
    const name = uniqueName('c');
    await clusters.register(name, {});
    agent = new TestAgent(endpoint.address, endpoint.caPem, name);
    await agent.enroll({ $case: 'bootstrapToken', value: (await clusters.createEnrollmentToken(admin, name)).token });

    const agentKey = await webcrypto.subtle.importKey(
      'pkcs8',
      createPrivateKey(agent.tls!.keyPem).export({ type: 'pkcs8', format: 'der' }),
      P256,
      false,
      ['sign'],
    );
    selfSigned = await lookalike(agent, { subject: `CN=${name}, O=Sigil clusters`, key: agentKey }, new Date('2100-01-01T00:00:00Z'));
    const forger = await webcrypto.subtle.generateKey(P256, false, ['sign', 'verify']);
    otherCa = await lookalike(agent, { subject: CA_SUBJECT, key: forger.privateKey }, new Date(Date.now() + 3600_000));
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    agent?.close();
    await t?.dispose();
  });

  it('accepts the certificate the cluster CA issued at enrollment (the control)', async () => {
    const principal = await auth.authenticate(callPresenting(agent.enrollment!.certificateDer));
    expect(principal.id).toBe(agent.enrollment!.clusterId);
  });

  it('refuses a self-signed certificate for a real cluster’s key and URI, even when the TLS layer hands it over', async () => {
    // The forgery is faithful: its key and URI are the enrolled agent's, and it is self-signed.
    const cert = new X509Certificate(selfSigned);
    expect(cert.subjectAltName).toBe(`URI:${clusterUri(agent.enrollment!.clusterId)}`);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(await refused(auth.authenticate(callPresenting(selfSigned)))).toMatchObject({
      code: status.UNAUTHENTICATED,
      errorCode: 'invalid_client_certificate',
    });
  });

  it('refuses a certificate from another CA with the Sigil CA’s name', async () => {
    const cert = new X509Certificate(otherCa);
    expect(cert.issuer).toBe(new X509Certificate(endpoint.caPem).subject);
    expect(await refused(auth.authenticate(callPresenting(otherCa)))).toMatchObject({
      code: status.UNAUTHENTICATED,
      errorCode: 'invalid_client_certificate',
    });
  });

  it('refuses a certificate from the cluster CA once it has expired, though its verdict was cached', async () => {
    const ca = t.app.get(ClusterCertificateAuthority);
    const { certificateDer } = await ca.issueClientCertificate({
      csrDer: agent.tls!.csrDer,
      clusterId: agent.enrollment!.clusterId,
      clusterName: agent.cluster,
      ttlSeconds: 2,
    });
    expect((await auth.authenticate(callPresenting(certificateDer))).id).toBe(agent.enrollment!.clusterId);
    await new Promise((r) => setTimeout(r, 2_100));
    expect(await refused(auth.authenticate(callPresenting(certificateDer)))).toMatchObject({
      code: status.UNAUTHENTICATED,
      errorCode: 'client_certificate_expired',
    });
  });

  it('over real mTLS, both forgeries are refused and the issued certificate works', async () => {
    const seen: status[] = [];
    for (const der of [selfSigned, otherCa]) {
      const client = new AgentServiceClient(
        endpoint.address,
        agentChannelCredentials(endpoint.caPem, { keyPem: agent.tls!.keyPem, certificatePem: derToPem(der, 'CERTIFICATE') }),
      );
      clients.push(client);
      seen.push((await syncRefusal(client)).code);
    }
    // The self-signed one reaches the handler, which finds no verified certificate. TLS aborts the
    // handshake for the one whose issuer name matches the CA but whose signature does not verify.
    expect(seen[0]).toBe(status.UNAUTHENTICATED);
    expect([status.UNAUTHENTICATED, status.UNAVAILABLE]).toContain(seen[1]);
    expect((await agent.desiredState()).generation).toBeGreaterThanOrEqual(0n);
  });
});
