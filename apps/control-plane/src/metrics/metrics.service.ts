import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The process's Prometheus registry; features register their metrics here. */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();

  readonly httpRequests = new Histogram({
    name: 'sigil_http_request_duration_seconds',
    help: 'REST request duration by method, route and status class',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  readonly dependencyUp = new Gauge({
    name: 'sigil_dependency_up',
    help: '1 when the last readiness check of a dependency succeeded',
    labelNames: ['dependency'] as const,
    registers: [this.registry],
  });

  readonly readinessChecks = new Counter({
    name: 'sigil_readiness_checks_total',
    help: 'Readiness checks by dependency and outcome',
    labelNames: ['dependency', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly agentStreams = new Gauge({
    name: 'sigil_agent_streams',
    help: 'Agent Sync streams open on this replica',
    registers: [this.registry],
  });

  readonly deliveryEventStreams = new Gauge({
    name: 'sigil_delivery_event_streams',
    help: 'Delivery event streams (GET …/deliveries/events, Server-Sent Events) open on this replica',
    registers: [this.registry],
  });

  readonly agentCalls = new Counter({
    name: 'sigil_agent_calls_total',
    help: 'Agent gRPC calls by method and status code',
    labelNames: ['method', 'code'] as const,
    registers: [this.registry],
  });

  readonly agentConnectionsRefused = new Counter({
    name: 'sigil_agent_connections_refused_total',
    help: 'Agent connections dropped before TLS finished: handshakes_full (the handshake bound), handshake_failed',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly agentTlsSessions = new Counter({
    name: 'sigil_agent_tls_sessions_total',
    help: 'Agent TLS connections established, by whether they resumed a session (resumed, full)',
    labelNames: ['handshake'] as const,
    registers: [this.registry],
  });

  readonly injectionGrants = new Counter({
    name: 'sigil_injection_grants_total',
    help: 'Grant rows agents reported (delivery mode inject), by outcome: recorded, ignored (a secret not delivered to that cluster), malformed, dropped (too many waiting)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly enrollments = new Counter({
    name: 'sigil_agent_enrollments_total',
    help: 'Enrollment attempts by method (bootstrap-token, kubernetes-identity) and outcome',
    labelNames: ['method', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly deliveriesBuilt = new Counter({
    name: 'sigil_delivery_snapshots_built_total',
    help: 'Cluster snapshots built by delivery jobs',
    registers: [this.registry],
  });

  readonly hsmWraps = new Counter({
    name: 'sigil_delivery_hsm_wraps_total',
    help: 'Data keys wrapped for a cluster by the HSM (cache misses)',
    registers: [this.registry],
  });

  readonly deliveryFailures = new Counter({
    name: 'sigil_delivery_job_failures_total',
    help: 'Delivery job attempts that failed (retried with backoff)',
    registers: [this.registry],
  });

  readonly leasesIssued = new Counter({
    name: 'sigil_leases_issued_total',
    help: 'Dynamic-secret credentials issued (roles created and leases activated)',
    registers: [this.registry],
  });

  readonly leasesRevoked = new Counter({
    name: 'sigil_leases_revoked_total',
    help: 'Dynamic-secret roles revoked (leases and orphans the reaper found)',
    registers: [this.registry],
  });

  readonly leasesFailed = new Counter({
    name: 'sigil_leases_failed_total',
    help: 'Dynamic-secret issues that failed (retried with backoff)',
    registers: [this.registry],
  });

  readonly leaseRevocationFailures = new Counter({
    name: 'sigil_lease_revocation_failures_total',
    help: 'Dynamic-secret revocations that failed (retried with backoff)',
    registers: [this.registry],
  });

  readonly leases = new Gauge({
    name: 'sigil_leases',
    help: 'Leases by state (intent, active, superseded, revoking), as the last sweep of this replica counted them',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });

  constructor() {
    this.registry.setDefaultLabels({ app: 'sigil-control-plane' });
    collectDefaultMetrics({ register: this.registry });
  }
}
