import { Metadata, status, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { Inject, Injectable } from '@nestjs/common';
import {
  AgentApiErrorCode,
  type AgentServiceServer,
  type EnrollRequest,
  type EnrollResponse,
  type RenewCertificateRequest,
  type RenewCertificateResponse,
} from '@sigil/agent-protocol';
import { PinoLogger } from 'nestjs-pino';
import { RateLimiter } from '../common/rate-limiter.js';
import { SigilError } from '../common/sigil-error.js';
import { RuntimeConfig } from '../config/runtime-config.js';
import { EnrollmentService } from '../enrollment/enrollment.service.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { AdmissionRamp } from './admission.js';
import { AgentAuthenticator, type AgentCall } from './agent-authenticator.js';
import { grpcError, toGrpcError } from './grpc-errors.js';
import { SyncStreams, type SyncCall } from './sync-streams.js';

/**
 * sigil.agent.v1.AgentService: maps each call onto the enrollment, authorisation, stream and
 * Sync stream services. Every method except Enroll starts by authenticating the caller's certificate
 * and then acts on that cluster only — there is no request field naming another cluster.
 */
@Injectable()
export class AgentService {
  /** Failed enrollments per source address: guessing tokens is throttled, honest agents are not. */
  private readonly enrollFailures = new RateLimiter(2, 10);
  private readonly admission: AdmissionRamp;

  constructor(
    @Inject(AgentAuthenticator) private readonly auth: AgentAuthenticator,
    @Inject(EnrollmentService) private readonly enrollment: EnrollmentService,
    @Inject(SyncStreams) private readonly streams: SyncStreams,
    @Inject(MetricsService) private readonly metrics: MetricsService,
    @Inject(PinoLogger) private readonly logger: PinoLogger,
    @Inject(RuntimeConfig) config: RuntimeConfig,
  ) {
    logger.setContext('agent-api');
    this.admission = new AdmissionRamp(config.grpc.admissionPerSecond);
  }

  /** The handlers grpc-js calls. */
  implementation(): AgentServiceServer {
    return {
      enroll: (call, cb) => this.unary('Enroll', call, cb, () => this.enroll(call)),
      renewCertificate: (call, cb) => this.unary('RenewCertificate', call, cb, () => this.renew(call)),
      sync: (call) => void this.sync(call),
    };
  }

  private async enroll(call: ServerUnaryCall<EnrollRequest, EnrollResponse>): Promise<EnrollResponse> {
    const peer = peerAddress(call);
    if (this.enrollFailures.blocked(peer)) {
      throw grpcError(AgentApiErrorCode.RateLimited, 'too many failed enrollments from this address', 5_000);
    }
    this.admit();
    const r = call.request;
    const method = r.credential?.$case === 'serviceAccountToken' ? 'kubernetes-identity' : 'bootstrap-token';
    try {
      const e = await this.enrollment.enroll({
        cluster: r.cluster,
        credential:
          r.credential?.$case === 'serviceAccountToken'
            ? { serviceAccountToken: r.credential.value }
            : r.credential?.$case === 'bootstrapToken'
              ? { bootstrapToken: r.credential.value }
              : undefined,
        csrDer: Buffer.from(r.csrDer),
        deliveryPublicKeyDer: Buffer.from(r.deliveryPublicKeyDer),
        agentVersion: r.agentVersion,
        peer,
      });
      this.metrics.enrollments.inc({ method, outcome: 'success' });
      return {
        clusterId: e.clusterId,
        certificateDer: e.certificateDer,
        caChainDer: e.caChainDer,
        notAfter: e.notAfter,
        clusterKeyEnvelope: e.clusterKeyEnvelope,
      };
    } catch (err) {
      this.metrics.enrollments.inc({ method, outcome: 'refused' });
      // Only refused credentials count: a busy control plane must not lock out the agents retrying it.
      if (err instanceof SigilError && (err.kind === 'unauthenticated' || err.kind === 'forbidden')) this.enrollFailures.take(peer);
      throw err;
    }
  }

  private async renew(call: ServerUnaryCall<RenewCertificateRequest, RenewCertificateResponse>): Promise<RenewCertificateResponse> {
    const principal = await this.auth.authenticate(call);
    const cert = await this.enrollment.renew(principal, Buffer.from(call.request.csrDer));
    return { certificateDer: cert.certificateDer, notAfter: cert.notAfter };
  }

  /**
   * Sync: the certificate is checked once, when the stream opens (revocation later ends the
   * stream: access-changed events and the sweep), then the admission ramp; the stream itself
   * (Hello first, states, acknowledgements) is SyncStreams'.
   */
  private async sync(call: SyncCall): Promise<void> {
    try {
      const principal = await this.auth.authenticate(call);
      this.admit();
      if (call.cancelled) return;
      this.streams.open(principal, call);
      // Accepted: an agent whose Hello names the built generation may hear nothing else until the
      // next build, and the headers are how it knows it is connected (readiness, metrics).
      call.sendMetadata(new Metadata());
      this.metrics.agentCalls.inc({ method: 'Sync', code: 'OK' });
    } catch (err) {
      const { error, internal } = toGrpcError(err);
      if (internal) this.logger.error({ err, method: 'Sync' }, 'agent call failed');
      this.metrics.agentCalls.inc({ method: 'Sync', code: status[error.code!] });
      call.emit('error', error);
    }
  }

  /** New sessions wait their turn while a (re)started replica ramps up. */
  private admit(): void {
    const wait = this.admission.admit();
    if (wait > 0) throw grpcError(AgentApiErrorCode.AdmissionRamp, 'the control plane is admitting agents gradually; retry later', wait);
  }

  private unary<Req, Res>(
    method: string,
    _call: AgentCall & { request: Req },
    callback: sendUnaryData<Res>,
    handler: () => Promise<Res>,
  ): void {
    handler().then(
      (res) => {
        this.metrics.agentCalls.inc({ method, code: 'OK' });
        callback(null, res);
      },
      (err: unknown) => {
        const { error, internal } = toGrpcError(err);
        if (internal) this.logger.error({ err, method }, 'agent call failed');
        this.metrics.agentCalls.inc({ method, code: status[error.code!] });
        callback(error);
      },
    );
  }
}

/** The caller's IP address (without port), for rate limits and the audit log. */
function peerAddress(call: AgentCall): string {
  const peer = call.getPeer();
  const m = /^(?:\[([^\]]+)\]|([^:]+)):\d+$/.exec(peer);
  return m?.[1] ?? m?.[2] ?? peer;
}
