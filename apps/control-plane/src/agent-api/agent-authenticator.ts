import { X509Certificate } from 'node:crypto';
import { status, type ServerUnaryCall } from '@grpc/grpc-js';
import { Inject, Injectable, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { spkiSha256 } from '../enrollment/cluster-ca.service.js';
import { ClusterEvents } from '../events/cluster-events.js';
import { AgentClusterRepository, type ClusterAccess } from './agent-cluster.repository.js';
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

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const CLUSTER_URI = /^URI:urn:sigil:cluster:([0-9a-f-]{36})$/;
/** How long a cluster's state is trusted without a revocation event; bounds staleness if one is lost. */
const ACCESS_TTL_MS = 5_000;

/**
 * Authorises every agent call except Enroll. TLS has already verified the certificate chains to
 * the cluster CA and is within its validity (grpc-js exposes only verified peers). Here: it is a
 * clientAuth certificate naming exactly one cluster, that cluster exists and is enrolled (not
 * disabled), and the certificate's key is the one its latest enrollment bound. Cluster state is
 * cached for a few seconds; revocation events clear it at once on every replica.
 */
@Injectable()
export class AgentAuthenticator implements OnModuleInit, OnModuleDestroy {
  private readonly access = new Map<string, { value: ClusterAccess | null; at: number }>();
  private readonly certs = new Map<string, { clusterId: string; keySha256: Buffer; notAfter: number } | null>();
  private unsubscribe: (() => void) | undefined;

  constructor(
    @Inject(AgentClusterRepository) private readonly clusters: AgentClusterRepository,
    @Inject(ClusterEvents) private readonly events: ClusterEvents,
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
      throw grpcError(status.UNAUTHENTICATED, 'client_certificate_required', 'a client certificate issued at enrollment is required');
    }
    const cert = this.parse(peer.fingerprint256, peer.raw);
    if (!cert)
      throw grpcError(status.UNAUTHENTICATED, 'invalid_client_certificate', 'the client certificate is not a Sigil cluster certificate');
    if (cert.notAfter <= Date.now())
      throw grpcError(status.UNAUTHENTICATED, 'client_certificate_expired', 'the client certificate has expired; enroll again');
    const access = await this.clusterAccess(cert.clusterId);
    if (!access) throw grpcError(status.UNAUTHENTICATED, 'cluster_not_found', 'the cluster of this certificate no longer exists');
    if (access.state === 'disabled') throw grpcError(status.PERMISSION_DENIED, 'cluster_disabled', `cluster ${access.name} is disabled`);
    if (access.state !== 'enrolled' || !access.agentKeySha256?.equals(cert.keySha256)) {
      throw grpcError(status.UNAUTHENTICATED, 'certificate_superseded', 'this certificate was replaced by a newer enrollment');
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

  private parse(fingerprint: string, raw: Buffer): { clusterId: string; keySha256: Buffer; notAfter: number } | null {
    const key = fingerprint;
    if (this.certs.has(key)) return this.certs.get(key)!;
    let parsed: { clusterId: string; keySha256: Buffer; notAfter: number } | null = null;
    try {
      const x = new X509Certificate(raw);
      const uris = (x.subjectAltName ?? '')
        .split(', ')
        .map((n) => CLUSTER_URI.exec(n)?.[1])
        .filter((id) => id !== undefined);
      if (uris.length === 1 && x.keyUsage?.includes(CLIENT_AUTH) && !x.ca) {
        parsed = {
          clusterId: uris[0]!,
          keySha256: spkiSha256(x.publicKey.export({ type: 'spki', format: 'der' })),
          notAfter: new Date(x.validTo).getTime(),
        };
      }
    } catch {
      parsed = null;
    }
    if (this.certs.size > 20_000) this.certs.clear();
    this.certs.set(key, parsed);
    return parsed;
  }

  private async clusterAccess(id: string): Promise<ClusterAccess | null> {
    const cached = this.access.get(id);
    if (cached && Date.now() - cached.at < ACCESS_TTL_MS) return cached.value;
    const value = await this.clusters.access(id);
    if (this.access.size > 50_000) this.access.clear();
    this.access.set(id, { value, at: Date.now() });
    return value;
  }
}
