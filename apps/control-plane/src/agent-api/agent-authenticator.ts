import { createHash, X509Certificate } from 'node:crypto';
import type { ServerUnaryCall } from '@grpc/grpc-js';
import { AgentApiErrorCode } from '@sigil/agent-protocol';
import { Inject, Injectable, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { ClusterCertificateAuthority } from '../enrollment/cluster-ca.service.js';
import { ClusterEvents } from '../events/cluster-events.js';
import { AgentClusterRepository, type ClusterAccess } from './agent-cluster.repository.js';
import { verifyClusterCertificate, type CertificateVerdict } from './cluster-certificate.js';
import { grpcError } from './grpc-errors.js';

/** What every kind of server call offers (grpc-js does not export its own name for it). */
export type AgentCall = Pick<ServerUnaryCall<unknown, unknown>, 'getAuthContext' | 'getPeer'>;

/** The cluster a call acts for, proven by its client certificate. */
export interface ClusterPrincipal {
  id: string;
  name: string;
  /** SHA-256 of the certificate's public key; a later enrollment replaces it. */
  keySha256: Buffer;
}

/** How long a cluster's state is trusted without a revocation event; bounds staleness if one is lost. */
const ACCESS_TTL_MS = 5_000;

/**
 * Authorises every agent call except Enroll. The peer certificate is verified here, whatever the
 * TLS library did or exposes: signed by the cluster CA, within its validity (and the CA's), a
 * clientAuth certificate naming exactly one cluster (cluster-certificate.ts). Then: that
 * cluster exists and is enrolled (not disabled), and the certificate's key is the one its latest
 * enrollment bound. The chain verdict is cached by the certificate's SHA-256 (one entry serves
 * every call on a connection and every reconnect with the same certificate); the validity
 * window is checked on every call. Cluster state is cached for a few seconds; revocation events
 * clear it at once on every replica.
 */
@Injectable()
export class AgentAuthenticator implements OnModuleInit, OnModuleDestroy {
  private readonly access = new Map<string, { value: ClusterAccess | null; at: number }>();
  /** Chain verdicts by the certificate's SHA-256 (hex). */
  private readonly verdicts = new Map<string, CertificateVerdict>();
  private trusted: X509Certificate[] | undefined;
  /** Cluster lookups asked for in this event-loop turn: one statement serves them all. */
  private lookups: Map<string, Array<{ resolve: (a: ClusterAccess | null) => void; reject: (e: unknown) => void }>> | undefined;
  private unsubscribe: (() => void) | undefined;

  constructor(
    @Inject(AgentClusterRepository) private readonly clusters: AgentClusterRepository,
    @Inject(ClusterEvents) private readonly events: ClusterEvents,
    @Inject(ClusterCertificateAuthority) private readonly ca: ClusterCertificateAuthority,
  ) {}

  onModuleInit(): void {
    this.unsubscribe = this.events.on((e) => {
      if (e.type === 'access-changed') this.access.delete(e.clusterId);
    });
  }

  onModuleDestroy(): void {
    this.unsubscribe?.();
  }

  async authenticate(call: AgentCall): Promise<ClusterPrincipal> {
    const peer = call.getAuthContext()?.sslPeerCertificate;
    if (!peer?.raw) {
      throw grpcError(AgentApiErrorCode.ClientCertificateRequired, 'a client certificate issued at enrollment is required');
    }
    const verdict = await this.verify(peer.raw);
    if (!verdict.ok)
      throw grpcError(AgentApiErrorCode.InvalidClientCertificate, 'the client certificate is not a Sigil cluster certificate');
    const { cert } = verdict;
    const now = Date.now();
    if (cert.notAfter <= now)
      throw grpcError(AgentApiErrorCode.ClientCertificateExpired, 'the client certificate has expired; enroll again');
    if (cert.notBefore > now) throw grpcError(AgentApiErrorCode.InvalidClientCertificate, 'the client certificate is not valid yet');
    const access = await this.clusterAccess(cert.clusterId);
    if (!access) throw grpcError(AgentApiErrorCode.ClusterNotFound, 'the cluster of this certificate no longer exists');
    if (access.state === 'disabled') throw grpcError(AgentApiErrorCode.ClusterDisabled, `cluster ${access.name} is disabled`);
    if (access.state !== 'enrolled' || !access.agentKeySha256?.equals(cert.keySha256)) {
      throw grpcError(AgentApiErrorCode.CertificateSuperseded, 'this certificate was replaced by a newer enrollment');
    }
    return { id: cert.clusterId, name: access.name, keySha256: cert.keySha256 };
  }

  /** Checks an open stream's principal again (the periodic sweep): still allowed? */
  async stillAllowed(principals: ClusterPrincipal[]): Promise<Set<ClusterPrincipal>> {
    const byId = await this.clusters.accessOf([...new Set(principals.map((p) => p.id))]);
    const now = Date.now();
    for (const [id, a] of byId) this.access.set(id, { value: a, at: now });
    return new Set(
      principals.filter((p) => {
        const a = byId.get(p.id);
        return a?.state === 'enrolled' && a.agentKeySha256?.equals(p.keySha256);
      }),
    );
  }

  private async verify(raw: Buffer): Promise<CertificateVerdict> {
    const key = createHash('sha256').update(raw).digest('hex');
    const cached = this.verdicts.get(key);
    if (cached) return cached;
    this.trusted ??= await this.trustedCas();
    const verdict = verifyClusterCertificate(raw, this.trusted);
    if (this.verdicts.size > 20_000) this.verdicts.clear();
    this.verdicts.set(key, verdict);
    return verdict;
  }

  /** The cluster CA certificates client certificates must chain to (one today; a list so a rotated CA can join). */
  private async trustedCas(): Promise<X509Certificate[]> {
    return [new X509Certificate(Buffer.from((await this.ca.certificate()).rawData))];
  }

  private async clusterAccess(id: string): Promise<ClusterAccess | null> {
    const cached = this.access.get(id);
    if (cached && Date.now() - cached.at < ACCESS_TTL_MS) return cached.value;
    const value = await this.lookup(id);
    if (this.access.size > 50_000) this.access.clear();
    this.access.set(id, { value, at: Date.now() });
    return value;
  }

  /** Batched like a DataLoader: 10,000 agents reconnecting cost a few statements, not 10,000. */
  private lookup(id: string): Promise<ClusterAccess | null> {
    return new Promise((resolve, reject) => {
      if (!this.lookups) {
        this.lookups = new Map();
        setImmediate(() => void this.flushLookups());
      }
      const waiting = this.lookups.get(id);
      if (waiting) waiting.push({ resolve, reject });
      else this.lookups.set(id, [{ resolve, reject }]);
    });
  }

  private async flushLookups(): Promise<void> {
    const batch = this.lookups!;
    this.lookups = undefined;
    try {
      const byId = await this.clusters.accessOf([...batch.keys()]);
      for (const [id, waiting] of batch) for (const w of waiting) w.resolve(byId.get(id) ?? null);
    } catch (err) {
      for (const waiting of batch.values()) for (const w of waiting) w.reject(err);
    }
  }
}
