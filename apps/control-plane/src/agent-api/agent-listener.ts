import { createHash } from 'node:crypto';
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
  onRefused?: (reason: 'handshakes_full' | 'handshake_stalled' | 'handshake_failed') => void;
  /** Errors of the TCP listener after it is bound (logged; accepting goes on). */
  onListenerError?: (err: Error) => void;
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
  private readonly handshaking = new Map<string, { socket: Socket; since: number }>();
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
      // TLS 1.3 only: a TLS 1.2 ticket carries the master secret, so ticket keys would open
      // recorded sessions; 1.3 resumption keeps a fresh key exchange. Agents are Sigil's own.
      minVersion: 'TLSv1.3',
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
      // grpc-js attaches its handlers later; an error in between must not crash the process.
      socket.on('error', () => undefined);
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
    if (this.handshaking.size >= this.opts.maxHandshakes && !this.evictStalled()) {
      this.opts.onRefused?.('handshakes_full');
      socket.resetAndDestroy();
      return;
    }
    const key = peerKey(socket);
    const entry = { socket, since: Date.now() };
    this.handshaking.set(key, entry);
    // A connection that closes before its handshake ends (timeout, reset) frees its slot too.
    socket.once('close', () => {
      if (this.handshaking.get(key) === entry) this.handshaking.delete(key);
    });
    this.tls.emit('connection', socket);
  }

  /**
   * All slots taken: a handshake takes milliseconds (under a 10,000-agent storm about a second),
   * so the oldest one, if it has been going for 3 s, is more likely a connection holding a slot
   * idle than an agent; it gives way. Holding every slot then takes a steady stream of fresh
   * connections, not a few idle ones.
   */
  private evictStalled(): boolean {
    const oldest = this.handshaking.entries().next();
    if (oldest.done || Date.now() - oldest.value[1].since < STALLED_HANDSHAKE_MS) return false;
    this.handshaking.delete(oldest.value[0]);
    this.opts.onRefused?.('handshake_stalled');
    oldest.value[1].socket.destroy();
    return true;
  }

  /** Binds the port (0 picks a free one) and returns it. */
  async listen(host: string, port: number): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.tcp.once('error', reject);
      this.tcp.listen({ host, port, backlog: 4096 }, () => {
        this.tcp.off('error', reject);
        // An accept error (EMFILE under a flood) is the kernel's back-pressure, not a reason to crash.
        this.tcp.on('error', (err) => this.opts.onListenerError?.(err));
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
    for (const { socket } of this.handshaking.values()) socket.destroy();
    return closed;
  }
}

/** A connection's four-tuple: the TLS socket over a raw one has the same. */
const peerKey = (s: Socket): string => `${s.remoteAddress}|${s.remotePort}|${s.localAddress}|${s.localPort}`;

/** A handshake older than this gives its slot to a new connection when all are taken. */
const STALLED_HANDSHAKE_MS = 3_000;

function secureContextOptions(identity: ListenerIdentity): SecureContextOptions {
  return {
    cert: identity.certificate,
    key: identity.privateKey,
    ca: identity.caCertificate,
    // The same on every replica (Node would derive it from each process's command line), and new
    // with a new CA, so tickets of another CA never resume.
    sessionIdContext: createHash('sha256').update(identity.caCertificate).digest('hex').slice(0, 32),
  };
}
