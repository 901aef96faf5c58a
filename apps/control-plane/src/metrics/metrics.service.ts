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
    help: 'Agent Watch streams open on this replica',
    registers: [this.registry],
  });

  readonly agentCalls = new Counter({
    name: 'sigil_agent_calls_total',
    help: 'Agent gRPC calls by method and status code',
    labelNames: ['method', 'code'] as const,
    registers: [this.registry],
  });

  readonly enrollments = new Counter({
    name: 'sigil_agent_enrollments_total',
    help: 'Enrollment attempts by method (bootstrap-token, kubernetes-identity) and outcome',
    labelNames: ['method', 'outcome'] as const,
    registers: [this.registry],
  });

  constructor() {
    this.registry.setDefaultLabels({ app: 'sigil-control-plane' });
    collectDefaultMetrics({ register: this.registry });
  }
}
