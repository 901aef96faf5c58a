import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { isIP, type Socket } from 'node:net';
import { checkServerIdentity, connect, createSecureContext, type SecureContext } from 'node:tls';
import { CallCredentials, ChannelCredentials } from '@grpc/grpc-js';
import { createCsr } from './csr.js';

export const derToPem = (der: Uint8Array | ArrayBuffer, label: string): string =>
  `-----BEGIN ${label}-----\n${Buffer.from(der as ArrayBuffer)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')}\n-----END ${label}-----\n`;

/**
 * The agent's TLS key (P-256, made where the agent runs and never sent anywhere) and a CSR for
 * it. The control plane puts the cluster's identity into the certificate; the CSR's subject is
 * only informative.
 */
export function createTlsKeyAndCsr(commonName: string): { keyPem: string; csrDer: Buffer } {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, csrDer: createCsr(commonName, privateKey) };
}

/** A CSR for an existing key (certificate renewal keeps the key). */
export function createCsrForKey(commonName: string, keyPem: string): Buffer {
  return createCsr(commonName, createPrivateKey(keyPem));
}

/**
 * TLS to the control plane: the server must present a certificate from the Sigil CA (`caPem`);
 * with `client`, the agent's certificate is offered (every call but Enroll needs it). The latest
 * TLS session is kept and offered on the next connection, so a reconnect (after a restart of
 * the control plane, whose replicas share ticket keys) resumes it instead of a full handshake.
 */
export function agentChannelCredentials(caPem: string, client?: { keyPem: string; certificatePem: string }): ChannelCredentials {
  return new ResumingCredentials(
    createSecureContext({ ca: caPem, ...(client ? { key: client.keyPem, cert: client.certificatePem } : {}) }),
  );
}

type ConnectorArgs = Parameters<ChannelCredentials['_createSecureConnector']>;

/**
 * grpc-js's own secure credentials with one addition: session resumption (grpc-js never passes
 * a session to `tls.connect`). It implements grpc-js's connector contract
 * (`_createSecureConnector`, grpc-js 1.10+); tests/integration/agent-tls-resumption.int-spec.ts
 * fails if an upgrade changes it.
 */
class ResumingCredentials extends ChannelCredentials {
  /** The newest ticket the server gave; one identity, one server fleet. */
  private session: Buffer | undefined;

  constructor(private readonly context: SecureContext) {
    super();
  }

  _isSecure(): boolean {
    return true;
  }

  _equals(other: ChannelCredentials): boolean {
    return other === this;
  }

  _createSecureConnector(target: ConnectorArgs[0], options: ConnectorArgs[1], callCredentials?: ConnectorArgs[2]) {
    // As grpc-js does: through an HTTP CONNECT proxy the target is the proxy, the real one is
    // `grpc.http_connect_target`; `grpc.ssl_target_name_override` names the certificate's host.
    const connectTarget = options['grpc.http_connect_target'];
    const host = hostOf(connectTarget ? connectTarget.replace(/^dns:(\/\/[^/]*\/)?/, '') : target.path);
    const name = options['grpc.ssl_target_name_override'] ?? host;
    const calls = callCredentials ?? CallCredentials.createEmpty();
    return {
      connect: (socket: Socket) =>
        new Promise<{ socket: Socket; secure: boolean }>((resolve, reject) => {
          const tls = connect(
            {
              socket,
              secureContext: this.context,
              host: name,
              // SNI takes names only; the certificate is still checked against the IP address.
              ...(isIP(name) ? {} : { servername: name }),
              checkServerIdentity: (_host, cert) => checkServerIdentity(name, cert),
              ALPNProtocols: ['h2'],
              session: this.session,
            },
            () => {
              if (!tls.authorized) {
                this.session = undefined;
                reject(tls.authorizationError);
                tls.destroy();
                return;
              }
              resolve({ socket: tls, secure: true });
            },
          );
          // Only a session whose server passed verification may be resumed (resumption skips it).
          tls.on('session', (session: Buffer) => {
            if (tls.authorized) this.session = session;
          });
          // A failed or reset connection keeps the ticket: a server that cannot use it simply
          // does a full handshake, and a restart or a reset at the handshake bound is exactly
          // the reconnect the ticket is for.
          tls.on('error', (err: Error) => reject(err));
        }),
      waitForReady: () => Promise.resolve(),
      getCallCredentials: () => calls,
      destroy: () => undefined,
    };
  }
}

/** The host of a `host:port` or `[v6]:port` target. */
function hostOf(authority: string): string {
  const v6 = /^\[([^\]]+)\](?::\d+)?$/.exec(authority);
  if (v6) return v6[1]!;
  const colon = authority.lastIndexOf(':');
  return colon > 0 && authority.indexOf(':') === colon ? authority.slice(0, colon) : authority;
}
