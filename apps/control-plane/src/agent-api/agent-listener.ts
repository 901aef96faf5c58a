import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { createServer as createTlsServer, type SecureContextOptions, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { ServerCredentials, type Server as GrpcServer } from '@grpc/grpc-js';

/** What the listener serves with: the replica's certificate chain and key, and the CA agents' certificates chain to. */
export interface ListenerIdentity {
  certificate: Buffer;
  privateKey: Buffer;
  caCertificate: Buffer;
}

export interface AgentListenerOptions {
  /**
   * Connections in their TLS handshake at once. Beyond it a new connection is reset at once
   * (a cheap refusal the agent's channel retries with backoff) rather than queued behind
   * thousands of others until the agents' connect timeouts expire and every handshake is
   * wasted, which is what a reconnect storm of 10,000 agents did.
   */
  maxHandshakes: number;
  /** A handshake not finished by then is dropped; it holds one of the slots above meanwhile. */
  handshakeTimeoutMs: number;
  /** How long a session ticket may resume a session (the TLS 1.3 ticket lifetime). */
  sessionLifetimeS: number;
  /** Called on every refused or failed handshake (metrics). */
  onRefused?: (reason: 'handshakes_full' | 'handshake_failed') => void;
  /** Called on every connection whose handshake finished (metrics: how many resumed). */
  onEstablished?: (resumed: boolean) => void;
}

/**
 * The agents' TCP and TLS listener in front of grpc-js. grpc-js's own secure listener queues
 * every handshake and cannot resume sessions across restarts; owning TLS here gives Sigil:
 * - a bound on concurrent handshakes (above);
 * - session resumption with ticket keys every replica derives from the HSM (`setTicketKeys`),
 *   so an agent reconnecting after a restart, or to another replica, skips the certificate
 *   signatures of a full handshake;
 * - the same verification as before: a client certificate is asked for, not required (Enroll
 *   has none), checked against the cluster CA by TLS and then by AgentAuthenticator.
 * Finished TLS sockets are handed to grpc-js through its connection injector, which serves
 * HTTP/2 on them and reports the peer certificate to the handlers as it did.
 */
export class AgentListener {
  private readonly tls: TlsServer;
  private readonly tcp: TcpServer;
  /**
   * Raw sockets in their handshake, by remote address and port: the TLS socket the server makes
   * over one has the same pair, which is how its end frees the slot.
   */
  private readonly handshaking = new Map<string, Socket>();
  private ticketKeys: Buffer | undefined;

  constructor(
    grpc: GrpcServer,
    identity: ListenerIdentity,
    private readonly opts: AgentListenerOptions,
  ) {
    // TLS is done here, so grpc-js sees already-secure sockets on an injector without TLS of its own.
    const injector = grpc.createConnectionInjector(ServerCredentials.createInsecure());
    this.tls = createTlsServer({
      ...secureContextOptions(identity),
      ALPNProtocols: ['h2'],
      minVersion: 'TLSv1.2',
      requestCert: true,
      rejectUnauthorized: false,
      handshakeTimeout: opts.handshakeTimeoutMs,
      sessionTimeout: opts.sessionLifetimeS,
    });
    this.tls.on('secureConnection', (socket: TLSSocket) => {
      this.handshaking.delete(peerKey(socket));
      if (socket.alpnProtocol !== 'h2') {
        socket.destroy();
        return;
      }
      this.opts.onEstablished?.(socket.isSessionReused());
      injector.injectConnection(socket);
    });
    this.tls.on('tlsClientError', (_err, socket) => {
      this.handshaking.delete(peerKey(socket));
      this.opts.onRefused?.('handshake_failed');
      socket.destroy();
    });
    this.tcp = createTcpServer({ noDelay: true }, (socket) => this.accept(socket));
  }

  private accept(socket: Socket): void {
    if (this.handshaking.size >= this.opts.maxHandshakes) {
      this.opts.onRefused?.('handshakes_full');
      socket.resetAndDestroy();
      return;
    }
    const key = peerKey(socket);
    this.handshaking.set(key, socket);
    // A connection that closes before its handshake ends (timeout, reset) frees its slot too.
    socket.once('close', () => {
      if (this.handshaking.get(key) === socket) this.handshaking.delete(key);
    });
    this.tls.emit('connection', socket);
  }

  /** Binds the port (0 picks a free one) and returns it. */
  async listen(host: string, port: number): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.tcp.once('error', reject);
      this.tcp.listen({ host, port, backlog: 4096 }, () => {
        this.tcp.off('error', reject);
        resolve();
      });
    });
    const address = this.tcp.address();
    if (!address || typeof address === 'string') throw new Error('the agent listener has no TCP address');
    return address.port;
  }

  /** A renewed certificate: new handshakes use it; established connections keep theirs. */
  setIdentity(identity: ListenerIdentity): void {
    // A new context would otherwise start with random ticket keys (Node keeps only those passed as options).
    this.tls.setSecureContext({ ...secureContextOptions(identity), ticketKeys: this.ticketKeys });
  }

  /** Ticket keys (48 bytes) shared by every replica; tickets made under other keys fall back to a full handshake. */
  setTicketKeys(keys: Buffer): void {
    this.ticketKeys = keys;
    this.tls.setTicketKeys(keys);
  }

  get handshakesInFlight(): number {
    return this.handshaking.size;
  }

  /**
   * Stops accepting and drops handshakes in progress. The promise settles once every connection
   * is gone: those handed to grpc-js end with its shutdown, which the caller starts meanwhile.
   */
  close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.tcp.close(() => resolve()));
    for (const s of this.handshaking.values()) s.destroy();
    return closed;
  }
}

const peerKey = (s: Socket): string => `${s.remoteAddress}|${s.remotePort}`;

function secureContextOptions(identity: ListenerIdentity): SecureContextOptions {
  return { cert: identity.certificate, key: identity.privateKey, ca: identity.caCertificate };
}
