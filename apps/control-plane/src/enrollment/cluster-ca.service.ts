import 'reflect-metadata'; // @peculiar/x509 uses tsyringe, which needs it loaded first
import { createHash, randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import type { webcrypto as wc } from 'node:crypto';
import { Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import * as x509 from '@peculiar/x509';
import { EnrollmentError, EnrollmentErrorCode } from './enrollment.errors.js';
import { HsmService } from '../hsm/hsm.service.js';
import { ClusterCaRepository } from './cluster-ca.repository.js';
import { ClientCertificateTemplate, CsrRejected, randomSerial, verifyCsr, type VerifiedCsr } from './client-certificate.js';

// @peculiar/x509 is typed against the DOM's WebCrypto; Node's is the same API.
type Crypto = Parameters<typeof x509.cryptoProvider.set>[0];
x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export const CA_SUBJECT = 'CN=Sigil cluster CA, O=Sigil';
/** Client certificates are short-lived: the agent renews them; a disabled cluster is also refused at once. */
export const DEFAULT_CLIENT_CERT_TTL_S = 24 * 3600;
const MAX_CLIENT_CERT_TTL_S = 7 * 24 * 3600;
const ECDSA_P256 = { name: 'ECDSA', hash: 'SHA-256' };

/** A random positive 128-bit serial number (hex). */
const serial = () =>
  randomBytes(16)
    .toString('hex')
    .replace(/^[89a-f]/, '1');

/** The URI a cluster certificate names its cluster by (subjectAltName). */
export const clusterUri = (clusterId: string) => `urn:sigil:cluster:${clusterId}`;

/**
 * The CA that issues agents' client certificates. Its EC P-256 key is generated in the HSM and
 * never leaves it: certificates are assembled here and their to-be-signed bytes signed by the
 * HSM. The CA certificate itself is stored in PostgreSQL.
 */
@Injectable()
export class ClusterCertificateAuthority implements OnApplicationBootstrap {
  private ca: x509.X509Certificate | undefined;
  private template: ClientCertificateTemplate | undefined;
  /** WebCrypto with `sign` done by the HSM's CA key; everything else is Node's. */
  private readonly hsmCrypto: Crypto;
  private readonly hsmKey = {
    algorithm: { name: 'ECDSA', namedCurve: 'P-256' },
    type: 'private',
    extractable: false,
    usages: ['sign'],
  } as never;

  constructor(
    @Inject(HsmService) private readonly hsm: HsmService,
    @Inject(ClusterCaRepository) private readonly repo: ClusterCaRepository,
  ) {
    const subtle = webcrypto.subtle;
    const sign = async (_alg: unknown, _key: unknown, data: wc.BufferSource): Promise<ArrayBuffer> => {
      const bytes = ArrayBuffer.isView(data) ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : Buffer.from(data);
      const signature = await this.hsm.caSign(createHash('sha256').update(bytes).digest());
      return new Uint8Array(signature).buffer;
    };
    this.hsmCrypto = {
      getRandomValues: webcrypto.getRandomValues.bind(webcrypto),
      subtle: new Proxy(subtle, {
        get: (target, prop: keyof wc.SubtleCrypto) =>
          prop === 'sign' ? sign : (target[prop] as (...a: unknown[]) => unknown).bind(target),
      }),
    } as unknown as Crypto;
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.certificate();
  }

  /** The CA certificate, created (key in the HSM, self-signed) on first use by one replica. */
  async certificate(): Promise<x509.X509Certificate> {
    if (this.ca) return this.ca;
    const existing = await this.repo.current();
    if (existing) return (this.ca = new x509.X509Certificate(existing));
    const der = await this.repo.creationTransaction(async (tx) => {
      const again = await this.repo.current(tx);
      if (again) return again;
      await this.hsm.ensureCaKey();
      const spki = await this.hsm.caPublicKey();
      const now = Date.now();
      const cert = await x509.X509CertificateGenerator.create(
        {
          serialNumber: serial(),
          subject: CA_SUBJECT,
          issuer: CA_SUBJECT,
          notBefore: new Date(now - 5 * 60_000),
          notAfter: new Date(now + 10 * 365 * 24 * 3600_000),
          publicKey: spki,
          signingKey: this.hsmKey,
          signingAlgorithm: ECDSA_P256,
          extensions: [
            new x509.BasicConstraintsExtension(true, 0, true),
            new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
            await x509.SubjectKeyIdentifierExtension.create(spki, false, this.hsmCrypto),
          ],
        },
        this.hsmCrypto,
      );
      const raw = Buffer.from(cert.rawData);
      await this.repo.insert(tx, 1, raw);
      return raw;
    });
    return (this.ca = new x509.X509Certificate(der));
  }

  /**
   * The gRPC server's own certificate (serverAuth) for a key generated in this process, so agents
   * need to trust one CA only. Each replica makes its own at start; the key is never stored.
   */
  async issueServerCertificate(req: {
    publicKeySpki: Buffer;
    names: string[];
    ttlSeconds: number;
  }): Promise<{ certificateDer: Buffer; notAfter: Date }> {
    const ca = await this.certificate();
    const now = Date.now();
    const notAfter = new Date(now + req.ttlSeconds * 1000);
    const altNames = req.names.map((n) => (isIP(n) ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n }));
    const cert = await x509.X509CertificateGenerator.create(
      {
        serialNumber: serial(),
        subject: `CN=${req.names[0] ?? 'sigil-control-plane'}, O=Sigil`,
        issuer: ca.subject,
        notBefore: new Date(now - 60_000),
        notAfter,
        publicKey: new x509.PublicKey(req.publicKeySpki),
        signingKey: this.hsmKey,
        signingAlgorithm: ECDSA_P256,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
          new x509.SubjectAlternativeNameExtension(altNames, false),
          await x509.AuthorityKeyIdentifierExtension.create(ca, false, this.hsmCrypto),
        ],
      },
      this.hsmCrypto,
    );
    return { certificateDer: Buffer.from(cert.rawData), notAfter };
  }

  /**
   * A client certificate for a cluster's agent, from its CSR (whose signature proves it holds the
   * key). Subject CN = cluster name; subjectAltName URI = urn:sigil:cluster:<id>; clientAuth only.
   * Built from the CA's template (client-certificate.ts); the HSM signs its to-be-signed bytes.
   */
  async issueClientCertificate(req: {
    csrDer: Buffer;
    clusterId: string;
    clusterName: string;
    ttlSeconds?: number;
  }): Promise<IssuedClientCertificate> {
    return this.signClientCertificate(this.checkCsr(req.csrDer), req);
  }

  /** The CSR's key, once its signature verifies (the agent holds the private key). */
  checkCsr(csrDer: Buffer): VerifiedCsr {
    try {
      return verifyCsr(csrDer);
    } catch (err) {
      if (err instanceof CsrRejected) throw new EnrollmentError(EnrollmentErrorCode.InvalidCsr, err.message);
      throw err;
    }
  }

  /** A client certificate for a key whose CSR `checkCsr` verified. */
  async signClientCertificate(
    csr: VerifiedCsr,
    req: { clusterId: string; clusterName: string; ttlSeconds?: number },
  ): Promise<IssuedClientCertificate> {
    const ttl = Math.min(req.ttlSeconds ?? DEFAULT_CLIENT_CERT_TTL_S, MAX_CLIENT_CERT_TTL_S);
    const template = await this.clientTemplate();
    const now = Date.now();
    const notAfter = new Date(now + ttl * 1000);
    const tbs = template.toBeSigned({
      serial: randomSerial(),
      notBefore: new Date(now - 60_000),
      notAfter,
      commonName: req.clusterName,
      spkiDer: csr.spkiDer,
      uri: clusterUri(req.clusterId),
    });
    const signature = await this.hsm.caSign(createHash('sha256').update(tbs).digest());
    return { certificateDer: template.assemble(tbs, signature), notAfter, publicKeySha256: spkiSha256(csr.spkiDer) };
  }

  private async clientTemplate(): Promise<ClientCertificateTemplate> {
    if (this.template) return this.template;
    const ca = await this.certificate();
    return (this.template = new ClientCertificateTemplate(Buffer.from(ca.rawData)));
  }
}

export interface IssuedClientCertificate {
  certificateDer: Buffer;
  notAfter: Date;
  /** SHA-256 of the certified key's SPKI DER: what clusters.agent_key_sha256 records. */
  publicKeySha256: Buffer;
}

/** What a cluster's certificates are bound to: the SHA-256 of the agent's TLS public key (SPKI DER). */
export const spkiSha256 = (spkiDer: Buffer) => createHash('sha256').update(spkiDer).digest();
