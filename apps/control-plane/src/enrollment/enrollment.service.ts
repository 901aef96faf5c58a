import { Inject, Injectable } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { AuditService } from '../audit/audit.service.js';
import { FailedAttempts } from '../audit/failed-attempts.js';
import { hashToken } from '../auth/bootstrap-admin-token.js';
import { dns1123LabelProblem } from '../common/kubernetes-names.js';
import { SigilError } from '../common/sigil-error.js';
import { EnrollmentError, EnrollmentErrorCode } from './enrollment.errors.js';
import { RuntimeConfig } from '../config/runtime-config.js';
import { MembershipService } from '../delivery/membership.service.js';
import { ClusterEvents } from '../events/cluster-events.js';
import { ClusterKeyService } from '../keys/cluster-keys.service.js';
import { KeyCustodyError } from '../keys/keys.errors.js';
import { AgentWorkQueue } from '../database/agent-work-queue.js';
import { GroupCommit, type Settled } from '../database/group-commit.js';
import { UnitOfWork } from '../database/transaction.js';
import { ClusterCertificateAuthority, spkiSha256 } from './cluster-ca.service.js';
import type { VerifiedCsr } from './client-certificate.js';
import { ClusterEnrollmentRepository, type EnrollingCluster, type LockedToken } from '../clusters/cluster-enrollment.repository.js';
import { ServiceAccountTokenRefused, ServiceAccountTokenVerifier } from './service-account-tokens.js';

export type EnrollmentCredential = { bootstrapToken: string } | { serviceAccountToken: string };

export interface EnrollRequest {
  cluster: string;
  credential: EnrollmentCredential | undefined;
  csrDer: Buffer;
  deliveryPublicKeyDer: Buffer;
  agentVersion: string;
  /** Where the call came from, for the audit record. */
  peer: string;
}

export interface Enrollment {
  clusterId: string;
  certificateDer: Buffer;
  caChainDer: Buffer[];
  notAfter: Date;
  clusterKeyEnvelope: Buffer;
}

const TOKEN_SHAPE = /^sge_[A-Za-z0-9_-]{43}$/;
/** What an agent may call its version (Enroll and Watch). */
export const AGENT_VERSION = /^[\x21-\x7e]{0,64}$/;
/** Told to the caller for every bootstrap-token failure alike: no oracle for which tokens exist. */
const TOKEN_REFUSED = 'the enrollment token is unknown, expired, already used, or for another cluster';
/** The one answer to every refused service-account token. */
const SA_TOKEN_REFUSED = 'the service-account token was not accepted for this cluster';

/** Enrollments committed in one transaction at most (see `commitBatch`). */
const ENROLL_BATCH = 64;
/** Batches committing at once: one in PostgreSQL while the other waits for the HSM. */
const ENROLL_BATCHES_AT_ONCE = 2;
/** How long an enrollment may wait for its batch; well inside an agent's call deadline. */
const ENROLL_MAX_WAIT_MS = 5_000;

/** An enrollment whose request passed the checks that need no rows, waiting for its batch. */
interface Pending {
  req: EnrollRequest;
  credential: EnrollmentCredential;
  /** The identity a service-account token was verified against (JSON), for that path. */
  verifiedIdentity?: string;
  /**
   * The CSR, verified on arrival (a signature check each: done one by one as requests come, not
   * for a whole batch in one event-loop turn); its refusal is told only once the credential
   * passed, as before.
   */
  csr: Settled<{ csr: VerifiedCsr; keySha256: Buffer }>;
}

/** What one enrollment's share of a committed batch produced. */
interface Committed {
  cluster: EnrollingCluster;
  cert: { certificateDer: Buffer; notAfter: Date };
  envelope: Buffer;
  /** The cluster's new desired generation; undefined for a retry (nothing changed). */
  generation: string | undefined;
  /** The cluster was enrolled with another TLS key before: its certificates stop working now. */
  superseded: boolean;
}

/** What the locked rows say this enrollment is. */
interface Admitted {
  cluster: EnrollingCluster;
  csr: VerifiedCsr;
  /** SHA-256 of the CSR's key: what the cluster's certificates will be bound to. */
  keySha256: Buffer;
  deliveryPublicKeyDer: Buffer;
  agentVersion: string;
  /** The token to consume (bootstrap path, first use). */
  tokenId: string | null;
  /**
   * A retry of an enrollment that already completed (the agent did not see the answer): the
   * same token (or identity) and the same TLS and delivery keys. Nothing changes but a fresh
   * certificate for the same key; the stored envelope is returned again.
   */
  retry: boolean;
}

/**
 * Enrollment: an agent proves its cluster's identity and exchanges a CSR for a short-lived
 * client certificate plus the cluster delivery key wrapped to its RSA key. Everything is done
 * in one transaction that holds the token and cluster rows locked, so a token is consumed
 * exactly when a certificate is issued, and a failed enrollment leaves nothing behind.
 *
 * Retries are idempotent: a used, unexpired token is accepted again only from the agent that
 * used it — the CSR (signed by its TLS key) is for the key the cluster's enrollment certified,
 * the delivery key is the active one's, and the cluster is still enrolled with them — and then
 * only re-issues a certificate for that key. Any other use of a used token gets the one refusal.
 *
 * Enrollments are committed in batches (database/group-commit.ts): under a storm of them, one
 * transaction admits up to ENROLL_BATCH, in about ten statements whatever their number, where
 * each used to cost ten of its own. Every request is still judged alone on the locked rows and
 * answered with its own result or refusal; a batch whose transaction fails is committed again
 * one enrollment at a time. Batches run through the agent work gate
 * (database/agent-work-queue.ts) in front of the pool.
 */
@Injectable()
export class EnrollmentService {
  constructor(
    @Inject(ClusterEnrollmentRepository) private readonly repo: ClusterEnrollmentRepository,
    @Inject(UnitOfWork) private readonly uow: UnitOfWork,
    @Inject(ClusterCertificateAuthority) private readonly ca: ClusterCertificateAuthority,
    @Inject(ClusterKeyService) private readonly clusterKeys: ClusterKeyService,
    @Inject(ServiceAccountTokenVerifier) private readonly saTokens: ServiceAccountTokenVerifier,
    @Inject(AuditService) private readonly audit: AuditService,
    @Inject(FailedAttempts) private readonly failedAttempts: FailedAttempts,
    @Inject(ClusterEvents) private readonly events: ClusterEvents,
    @Inject(MembershipService) private readonly membership: MembershipService,
    @Inject(AgentWorkQueue) private readonly gate: AgentWorkQueue,
    @Inject(RuntimeConfig) private readonly config: RuntimeConfig,
    @Inject(PinoLogger) private readonly logger: PinoLogger,
  ) {
    logger.setContext('enrollment');
    this.batches = new GroupCommit<Pending, Committed>({
      name: 'enrollment',
      maxBatch: ENROLL_BATCH,
      concurrency: ENROLL_BATCHES_AT_ONCE,
      maxWaiting: config.agentWork.queueDepth,
      maxWaitMs: ENROLL_MAX_WAIT_MS,
      // One enrollment per cluster per batch: each is judged on rows no other in its batch changed.
      key: (p) => p.req.cluster,
      commit: (batch) => this.gate.run(() => this.commitBatch(batch)),
    });
  }

  private readonly batches: GroupCommit<Pending, Committed>;

  async enroll(req: EnrollRequest): Promise<Enrollment> {
    const method = req.credential && 'serviceAccountToken' in req.credential ? 'kubernetes-identity' : 'bootstrap-token';
    try {
      this.checkShape(req);
      const credential = req.credential!;
      // The token is checked before the transaction: fetching an issuer's keys can take seconds.
      const identity =
        'serviceAccountToken' in credential ? await this.verifyServiceAccount(req.cluster, credential.serviceAccountToken) : undefined;
      const result = await this.batches.submit({ req, credential, verifiedIdentity: identity, csr: this.checkCsr(req) });
      if (result.generation !== undefined) {
        // Certificates of a previous enrollment stop working now, on every replica (nothing to stop for a retry).
        if (result.superseded) await this.events.publish({ type: 'access-changed', clusterId: result.cluster.id });
        // Its snapshot is built for the (possibly new) delivery key; the agent's stream hears of it when it is.
        await this.membership.enqueue(new Map([[result.cluster.id, result.generation]]));
      }
      const retry = result.generation === undefined;
      await this.record(req, retry ? `${method}, retry` : method, 'success', 200, result.cluster.name);
      this.logger.info({ cluster: result.cluster.name, method, retry, agentVersion: req.agentVersion }, 'cluster enrolled');
      return {
        clusterId: result.cluster.id,
        certificateDer: result.cert.certificateDer,
        caChainDer: [Buffer.from((await this.ca.certificate()).rawData)],
        notAfter: result.cert.notAfter,
        clusterKeyEnvelope: result.envelope,
      };
    } catch (err) {
      const e = toSigilError(err);
      if (e.kind === 'unauthenticated' || e.kind === 'forbidden') {
        this.logger.warn({ cluster: req.cluster.slice(0, 63), method, code: e.code, reason: e.message }, 'enrollment refused');
        // Counted per window, not one chain append per attempt (a flood must not stall audit writers).
        this.failedAttempts.note({
          action: 'cluster.enroll',
          method: 'GRPC',
          path: '/sigil.agent.v1.AgentService/Enroll',
          status: e.kind === 'forbidden' ? 403 : 401,
          source: req.peer,
        });
      }
      throw e;
    }
  }

  /** A fresh certificate for a new CSR from an enrolled agent; a new key replaces the old one. */
  async renew(cluster: { id: string; name: string }, csrDer: Buffer): Promise<{ certificateDer: Buffer; notAfter: Date }> {
    if (csrDer.length === 0 || csrDer.length > 16 * 1024)
      throw new EnrollmentError(EnrollmentErrorCode.InvalidCsr, 'csr_der must be a DER PKCS#10 request');
    const csr = this.ca.checkCsr(csrDer);
    const cert = await this.ca.signClientCertificate(csr, {
      clusterId: cluster.id,
      clusterName: cluster.name,
      ttlSeconds: this.config.agents.certTtlSeconds,
    });
    await this.gate.run(() => this.repo.setAgentKey(cluster.id, cert.publicKeySha256));
    return { certificateDer: cert.certificateDer, notAfter: cert.notAfter };
  }

  /**
   * One transaction for a batch: the tokens and clusters locked in two statements, each
   * enrollment judged alone on them (a refusal is its answer, not the batch's), then the new
   * delivery keys, the certificates and the enrolled clusters for all admitted at once.
   */
  private commitBatch(batch: Pending[]): Promise<Array<Settled<Committed>>> {
    return this.uow.run(async (tx) => {
      const byToken = batch.flatMap((p) =>
        'bootstrapToken' in p.credential && TOKEN_SHAPE.test(p.credential.bootstrapToken) ? [hashToken(p.credential.bootstrapToken)] : [],
      );
      const tokens = await this.repo.lockTokens(tx, byToken);
      const named = await this.repo.lockClustersByName(
        tx,
        batch.flatMap((p) => (p.verifiedIdentity !== undefined ? [p.req.cluster] : [])),
      );
      const judged = batch.map((p): Settled<Admitted> => {
        try {
          const admitted =
            p.verifiedIdentity !== undefined
              ? this.byVerifiedIdentity(p, named.get(p.req.cluster), p.verifiedIdentity)
              : this.byBootstrapToken(p, tokens, (p.credential as { bootstrapToken: string }).bootstrapToken);
          if (admitted.cluster.state === 'disabled')
            throw new EnrollmentError(EnrollmentErrorCode.ClusterDisabled, `cluster ${admitted.cluster.name} is disabled`);
          return { ok: true, value: admitted };
        } catch (err) {
          return { ok: false, error: toSigilError(err) };
        }
      });
      const admitted = judged.flatMap((j) => (j.ok ? [j.value] : []));
      const ttlSeconds = this.config.agents.certTtlSeconds;
      // The same agent key enrolling again keeps its delivery key, so nothing sealed for it goes stale.
      const keepsKey = (a: Admitted) => a.cluster.activeKey?.agentPublicKey.equals(a.deliveryPublicKeyDer) ?? false;
      // Certificates (HSM signatures) and delivery keys (HSM wraps) in parallel, on the HSM workers.
      const [certs, keys] = await Promise.all([
        Promise.all(
          admitted.map((a) => this.ca.signClientCertificate(a.csr, { clusterId: a.cluster.id, clusterName: a.cluster.name, ttlSeconds })),
        ),
        this.clusterKeys.issueMany(
          tx,
          admitted.filter((a) => !keepsKey(a)).map((a) => ({ clusterId: a.cluster.id, agentPublicKeyDer: a.deliveryPublicKeyDer })),
        ),
      ]);
      const generations = await this.repo.markEnrolled(
        tx,
        admitted
          .filter((a) => !a.retry)
          .map((a) => ({ clusterId: a.cluster.id, tokenId: a.tokenId, agentKeySha256: a.keySha256, agentVersion: a.agentVersion })),
      );
      const committed = new Map(
        admitted.map((a, i): [Admitted, Committed] => [
          a,
          {
            cluster: a.cluster,
            cert: certs[i]!,
            envelope: keepsKey(a) ? a.cluster.activeKey!.envelope : keys.get(a.cluster.id)!.envelope,
            generation: a.retry ? undefined : generations.get(a.cluster.id),
            superseded: !a.cluster.agentKeySha256?.equals(a.keySha256),
          },
        ]),
      );
      return judged.map((j): Settled<Committed> => (j.ok ? { ok: true, value: committed.get(j.value)! } : j));
    });
  }

  private checkShape(req: EnrollRequest): void {
    if (dns1123LabelProblem(req.cluster))
      throw new EnrollmentError(EnrollmentErrorCode.InvalidCluster, 'cluster must be a registered cluster name');
    if (!req.credential)
      throw new EnrollmentError(EnrollmentErrorCode.CredentialRequired, 'give a bootstrap_token or a service_account_token');
    if (req.csrDer.length === 0 || req.csrDer.length > 16 * 1024)
      throw new EnrollmentError(EnrollmentErrorCode.InvalidCsr, 'csr_der must be a DER PKCS#10 request');
    if (!AGENT_VERSION.test(req.agentVersion))
      throw new EnrollmentError(EnrollmentErrorCode.InvalidAgentVersion, 'agent_version must be at most 64 printable characters');
    try {
      ClusterKeyService.checkAgentKey(req.deliveryPublicKeyDer);
    } catch (err) {
      if (err instanceof KeyCustodyError)
        throw new EnrollmentError(EnrollmentErrorCode.InvalidDeliveryKey, `delivery_public_key_der: ${err.message}`);
      throw err;
    }
  }

  private byBootstrapToken(pending: Pending, locked: Map<string, LockedToken>, token: string): Admitted {
    const { req } = pending;
    const refused = (why: string) => {
      this.logger.debug({ cluster: req.cluster, why }, 'bootstrap token refused');
      return new EnrollmentError(EnrollmentErrorCode.EnrollmentTokenInvalid, TOKEN_REFUSED);
    };
    // Looked up by its SHA-256: the lookup's timing depends on the digest, which the caller cannot
    // steer towards a stored one, so it leaks nothing about valid tokens (a constant-time compare).
    const row = TOKEN_SHAPE.test(token) ? locked.get(hashToken(token).toString('hex')) : undefined;
    if (!row) throw refused('unknown');
    if (row.expiresAt.getTime() <= Date.now()) throw refused('expired');
    const { cluster } = row;
    if (cluster.name !== req.cluster) throw refused('for another cluster');
    const { csr, keySha256 } = csrOf(pending);
    const admitted = { cluster, csr, keySha256, deliveryPublicKeyDer: req.deliveryPublicKeyDer, agentVersion: req.agentVersion };
    if (row.usedAt) {
      // Only the agent that used it, asking again for what it was given (see the class comment).
      if (!this.isRetry(cluster, req, keySha256)) throw refused('already used');
      return { ...admitted, tokenId: null, retry: true };
    }
    return { ...admitted, tokenId: row.id, retry: false };
  }

  /** The CSR's key, once its signature proves the caller holds it (told after the credential: see `csrOf`). */
  private checkCsr(req: EnrollRequest): Settled<{ csr: VerifiedCsr; keySha256: Buffer }> {
    try {
      const csr = this.ca.checkCsr(req.csrDer);
      return { ok: true, value: { csr, keySha256: spkiSha256(csr.spkiDer) } };
    } catch (err) {
      return { ok: false, error: toSigilError(err) };
    }
  }

  /** The cluster is enrolled, and with this TLS key (the CSR proves the caller holds it) and this delivery key. */
  private isRetry(cluster: EnrollingCluster, req: EnrollRequest, keySha256: Buffer): boolean {
    return (
      cluster.state === 'enrolled' &&
      cluster.agentKeySha256 !== null &&
      cluster.agentKeySha256.equals(keySha256) &&
      cluster.activeKey !== null &&
      cluster.activeKey.agentPublicKey.equals(req.deliveryPublicKeyDer)
    );
  }

  /**
   * Verifies the token against the cluster's registered identity; returns that identity as
   * verified. Every refusal, a cluster without an identity included, gets the same answer: what
   * failed (and whatever an issuer fetch ran into) goes to the log only, so Enroll is no probe of
   * the issuer's network.
   */
  private async verifyServiceAccount(name: string, token: string): Promise<string> {
    const cluster = await this.repo.findClusterByName(name);
    try {
      if (!cluster?.kubernetesIdentity) throw new ServiceAccountTokenRefused('not_configured', 'the cluster has no Kubernetes identity');
      await this.saTokens.verify(token, cluster.kubernetesIdentity, this.config.agents.audience);
    } catch (err) {
      if (err instanceof ServiceAccountTokenRefused) {
        this.logger.info({ cluster: name.slice(0, 63), why: err.reason, detail: err.message }, 'service-account token refused');
        throw new EnrollmentError(EnrollmentErrorCode.ServiceAccountTokenInvalid, SA_TOKEN_REFUSED);
      }
      throw err;
    }
    return JSON.stringify(cluster.kubernetesIdentity);
  }

  /**
   * The cluster (locked), provided its identity is still the one the token was verified against.
   * The identity can be presented any number of times, so a retry needs no special case; the
   * same keys again change nothing (no new generation, no access change) beyond a certificate.
   */
  private byVerifiedIdentity(pending: Pending, cluster: EnrollingCluster | undefined, verifiedIdentity: string): Admitted {
    const { req } = pending;
    if (!cluster || JSON.stringify(cluster.kubernetesIdentity) !== verifiedIdentity) {
      throw new EnrollmentError(EnrollmentErrorCode.KubernetesIdentityChanged, `cluster ${req.cluster} changed while enrolling; try again`);
    }
    const { csr, keySha256 } = csrOf(pending);
    return {
      cluster,
      csr,
      keySha256,
      deliveryPublicKeyDer: req.deliveryPublicKeyDer,
      agentVersion: req.agentVersion,
      tokenId: null,
      retry: this.isRetry(cluster, req, keySha256),
    };
  }

  private record(req: EnrollRequest, method: string, outcome: 'success' | 'denied', status: number, target: string): Promise<void> {
    return this.audit.record({
      at: new Date(),
      actorId: null,
      actorName: `agent (${method}) from ${req.peer}`,
      action: 'cluster.enroll',
      method: 'GRPC',
      path: '/sigil.agent.v1.AgentService/Enroll',
      target,
      outcome,
      status,
      requestId: null,
    });
  }
}

/** The verified CSR, or its refusal (thrown here, after the credential was judged). */
function csrOf(p: Pending): { csr: VerifiedCsr; keySha256: Buffer } {
  if (!p.csr.ok) throw p.csr.error;
  return p.csr.value;
}

function toSigilError(err: unknown): SigilError {
  if (err instanceof SigilError) return err;
  throw err;
}
