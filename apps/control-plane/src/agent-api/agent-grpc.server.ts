import { Server } from '@grpc/grpc-js';
import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown, type OnModuleDestroy } from '@nestjs/common';
import { AGENT_MESSAGE_LIMITS, AgentServiceService } from '@sigil/agent-protocol';
import { PinoLogger } from 'nestjs-pino';
import { RuntimeConfig } from '../config/runtime-config.js';
import { ClusterCertificateAuthority } from '../enrollment/cluster-ca.service.js';
import { HsmService } from '../hsm/hsm.service.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { AgentListener } from './agent-listener.js';
import { AgentService } from './agent.service.js';
import { ServerIdentity } from './server-identity.js';
import { SessionTicketRepository } from './session-ticket.repository.js';
import { SessionTickets } from './session-tickets.js';

/** A handshake takes milliseconds; one still going after this holds a slot for nothing. */
const HANDSHAKE_TIMEOUT_MS = 10_000;
/** A ticket resumes within its epoch of ticket keys (SessionTickets) and never longer than this. */
const TICKET_LIFETIME_S = 12 * 3600;

/**
 * Connection settings for thousands of mostly idle agents: the server pings each connection
 * every minute to notice dead peers (and keep NAT entries alive), accepts client pings no more
 * often than every 20 s, and bounds streams per connection. Messages are bounded by the limit the
 * agent uses too (MAX_AGENT_MESSAGE_BYTES, both directions): Sync parts stay below it.
 */
export const SERVER_OPTIONS = {
  'grpc.keepalive_time_ms': 60_000,
  'grpc.keepalive_timeout_ms': 20_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 20_000,
  'grpc.max_concurrent_streams': 32,
  ...AGENT_MESSAGE_LIMITS,
} as const;

/**
 * The agent-facing gRPC server (role `grpc`). TLS always: the server presents a certificate
 * from the cluster CA and asks every client for one, without requiring it — Enroll is the one
 * call made before a client has a certificate; every other call is refused without one. TLS
 * is AgentListener's (bounded handshakes, sessions resumed with HSM-derived ticket keys);
 * grpc-js serves HTTP/2 on the connections it hands over.
 */
@Injectable()
export class AgentGrpcServer implements OnApplicationBootstrap, OnModuleDestroy, OnApplicationShutdown {
  private server: Server | undefined;
  private listener: AgentListener | undefined;
  /** Settles once the listener stopped accepting and every connection is gone (see onModuleDestroy). */
  private listenerClosed: Promise<void> | undefined;
  private identity: ServerIdentity | undefined;
  private tickets: SessionTickets | undefined;
  /** The port actually bound (SIGIL_GRPC_PORT=0 picks a free one). */
  port: number | undefined;

  constructor(
    @Inject(RuntimeConfig) private readonly config: RuntimeConfig,
    @Inject(ClusterCertificateAuthority) private readonly ca: ClusterCertificateAuthority,
    @Inject(AgentService) private readonly service: AgentService,
    @Inject(HsmService) private readonly hsm: HsmService,
    @Inject(SessionTicketRepository) private readonly ticketLock: SessionTicketRepository,
    @Inject(MetricsService) private readonly metrics: MetricsService,
    @Inject(PinoLogger) private readonly logger: PinoLogger,
  ) {
    logger.setContext('agent-grpc');
  }

  async onApplicationBootstrap(): Promise<void> {
    if (!this.config.roles.includes('grpc')) return;
    const identity = new ServerIdentity(this.ca, this.config.grpc.serverNames, (err) =>
      this.logger.error({ err }, 'could not renew the gRPC server certificate; retrying in a minute'),
    );
    this.identity = identity;
    await identity.start();
    const server = new Server(SERVER_OPTIONS);
    server.addService(AgentServiceService, this.service.implementation());
    const listener = new AgentListener(server, identity.current, {
      maxHandshakes: this.config.grpc.maxHandshakes,
      handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
      sessionLifetimeS: TICKET_LIFETIME_S,
      onRefused: (reason) => this.metrics.agentConnectionsRefused.inc({ reason }),
      onEstablished: (resumed) => this.metrics.agentTlsSessions.inc({ handshake: resumed ? 'resumed' : 'full' }),
      onListenerError: (err) => this.logger.warn({ err }, 'agent listener error; still accepting'),
    });
    identity.onRenewed(() => listener.setIdentity(identity.current));
    this.tickets = new SessionTickets(
      this.hsm,
      (fn) => this.ticketLock.withCreationLock(fn),
      (keys) => listener.setTicketKeys(keys),
      (err) => this.logger.error({ err }, 'could not derive TLS session-ticket keys; retrying in a minute'),
    );
    await this.tickets.start();
    this.port = await listener.listen(this.config.grpc.host, this.config.grpc.port);
    this.server = server;
    this.listener = listener;
    this.logger.info({ host: this.config.grpc.host, port: this.port, names: this.config.grpc.serverNames }, 'agent gRPC listening');
  }

  /** The CA bundle agents trust (PEM). */
  get caPem(): string | undefined {
    return this.identity?.caPem;
  }

  /**
   * Shutdown starts by refusing new connections, before the Sync streams end (SyncStreams tells
   * agents to come back within a few seconds) and before the other modules stop. While the
   * listener accepted until onApplicationShutdown, agents told to reconnect came back to this
   * very process, paying a handshake and a Hello each, only to be cut off again moments later.
   */
  onModuleDestroy(): void {
    this.listenerClosed = this.listener?.close();
  }

  async onApplicationShutdown(): Promise<void> {
    this.identity?.stop();
    this.tickets?.stop();
    const server = this.server;
    if (!server) return;
    const started = performance.now();
    const closed = this.listenerClosed ?? this.listener!.close();
    // Streams are long-lived: give unary calls a moment, then cut the rest (agents reconnect elsewhere).
    const forced = await new Promise<boolean>((resolve) => {
      const force = setTimeout(() => {
        server.forceShutdown();
        resolve(true);
      }, 1_000).unref();
      server.tryShutdown(() => {
        clearTimeout(force);
        resolve(false);
      });
    });
    await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 1_000).unref())]);
    this.logger.info({ ms: Math.round(performance.now() - started), forced }, 'agent gRPC stopped');
  }
}
