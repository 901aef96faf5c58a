import { generateKeyPairSync } from 'node:crypto';
import { derToPem as pem } from '@sigil/agent-protocol';
import type { ClusterCertificateAuthority } from '../enrollment/cluster-ca.service.js';
import type { ListenerIdentity } from './agent-listener.js';

/** The server certificate's lifetime; it is renewed in place at two thirds of it. */
const SERVER_CERT_TTL_S = 7 * 24 * 3600;

/**
 * What the agent listener's TLS uses: the cluster CA (to verify agents' client certificates) and
 * this replica's own serving certificate, whose P-256 key is made in memory at start and never
 * written anywhere. The certificate is renewed before it expires without a restart: the
 * listener takes the new one for new handshakes (`onRenewed`).
 */
export class ServerIdentity {
  private caPemText: string | undefined;
  private identity: ListenerIdentity | undefined;
  private renewal: NodeJS.Timeout | undefined;
  private readonly renewed = new Set<() => void>();

  constructor(
    private readonly authority: ClusterCertificateAuthority,
    private readonly names: string[],
    private readonly onRenewalError: (err: unknown) => void,
  ) {}

  async start(): Promise<void> {
    this.caPemText = pem(Buffer.from((await this.authority.certificate()).rawData), 'CERTIFICATE');
    await this.renew();
  }

  stop(): void {
    clearTimeout(this.renewal);
  }

  /** The PEM bundle agents trust for the server (and that verifies their own certificates). */
  get caPem(): string {
    return this.caPemText!;
  }

  /** The certificate chain (server, then CA), its key and the CA, as the listener takes them. */
  get current(): ListenerIdentity {
    return this.identity!;
  }

  onRenewed(listener: () => void): void {
    this.renewed.add(listener);
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
      caCertificate: Buffer.from(this.caPem),
    };
    for (const l of this.renewed) l();
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
}
