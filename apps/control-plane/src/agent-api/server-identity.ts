import { generateKeyPairSync } from 'node:crypto';
import type { experimental } from '@grpc/grpc-js';
import { derToPem as pem } from '@sigil/agent-protocol';
import type { ClusterCertificateAuthority } from '../enrollment/cluster-ca.service.js';

type CaListener = experimental.CaCertificateUpdateListener;
type IdentityListener = experimental.IdentityCertificateUpdateListener;

/** The server certificate's lifetime; it is renewed in place at two thirds of it. */
const SERVER_CERT_TTL_S = 7 * 24 * 3600;

/**
 * What the gRPC server's TLS uses: the cluster CA (to verify agents' client certificates) and
 * this replica's own serving certificate, whose P-256 key is made in memory at start and never
 * written anywhere. The certificate is renewed before it expires without a restart: grpc-js
 * rebuilds its secure context when a provider announces an update.
 */
export class ServerIdentity implements experimental.CertificateProvider {
  private caListeners = new Set<CaListener>();
  private identityListeners = new Set<IdentityListener>();
  private ca: experimental.CaCertificateUpdate | undefined;
  private identity: experimental.IdentityCertificateUpdate | undefined;
  private renewal: NodeJS.Timeout | undefined;

  constructor(
    private readonly authority: ClusterCertificateAuthority,
    private readonly names: string[],
    private readonly onRenewalError: (err: unknown) => void,
  ) {}

  async start(): Promise<void> {
    this.ca = { caCertificate: Buffer.from(pem(Buffer.from((await this.authority.certificate()).rawData), 'CERTIFICATE')) };
    await this.renew();
  }

  stop(): void {
    clearTimeout(this.renewal);
  }

  /** The PEM bundle agents trust for the server (and that verifies their own certificates). */
  get caPem(): string {
    return this.ca!.caCertificate.toString();
  }

  private async renew(): Promise<void> {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const cert = await this.authority.issueServerCertificate({
      publicKeySpki: publicKey.export({ type: 'spki', format: 'der' }),
      names: this.names,
      ttlSeconds: SERVER_CERT_TTL_S,
    });
    this.identity = {
      certificate: Buffer.from(pem(cert.certificateDer, 'CERTIFICATE') + this.caPem),
      privateKey: Buffer.from(privateKey.export({ type: 'pkcs8', format: 'pem' })),
    };
    for (const l of this.identityListeners) l(this.identity);
    this.scheduleRenewal(Math.max(60_000, ((cert.notAfter.getTime() - Date.now()) * 2) / 3));
  }

  private scheduleRenewal(inMs: number): void {
    const attempt = () => {
      this.renew().catch((err: unknown) => {
        this.onRenewalError(err);
        this.scheduleRenewal(60_000); // the current certificate stays valid meanwhile
      });
    };
    this.renewal = setTimeout(attempt, Math.min(inMs, 2 ** 31 - 1)).unref();
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    // Asynchronously, as grpc-js expects: it registers its own watcher only after adding this listener.
    if (this.ca) process.nextTick(listener, this.ca);
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    if (this.identity) process.nextTick(listener, this.identity);
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }
}
