import Counter from 'prom-client/lib/counter.js';
import Gauge from 'prom-client/lib/gauge.js';
import heapSizeAndUsed from 'prom-client/lib/metrics/heapSizeAndUsed.js';
import osMemoryHeap from 'prom-client/lib/metrics/osMemoryHeap.js';
import processStartTime from 'prom-client/lib/metrics/processStartTime.js';
import version from 'prom-client/lib/metrics/version.js';
import Registry from 'prom-client/lib/registry.js';
import { SecretState, type SecretStatus } from '@sigil/agent-protocol';

/**
 * The agent's /metrics, from prom-client's own registry, gauge and counter modules rather than
 * its entry point: that one also loads cluster, perf_hooks, the Pushgateway client and
 * @opentelemetry/api, and `collectDefaultMetrics` keeps an event-loop-delay timer and a GC
 * observer running; together about 1.5 MiB of the agent's idle RSS (docs/decisions/007).
 * The process metrics kept are prom-client's default ones, under their usual names.
 */
export { Counter, Gauge, Registry };

export function agentMetricsRegistry(): Registry {
  const registry = new Registry();
  for (const register of [processStartTime, osMemoryHeap, heapSizeAndUsed, version]) register(registry, {});
  // prom-client's processCpuTotal needs @opentelemetry/api (for exemplars); the same three series, read when scraped:
  const cpu = {
    user: (u: NodeJS.CpuUsage) => u.user,
    system: (u: NodeJS.CpuUsage) => u.system,
    total: (u: NodeJS.CpuUsage) => u.user + u.system,
  };
  for (const [name, help, part] of [
    ['process_cpu_user_seconds_total', 'Total user CPU time spent in seconds.', cpu.user],
    ['process_cpu_system_seconds_total', 'Total system CPU time spent in seconds.', cpu.system],
    ['process_cpu_seconds_total', 'Total user and system CPU time spent in seconds.', cpu.total],
  ] as const) {
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(part(process.cpuUsage()) / 1e6);
      },
    });
  }
  return registry;
}

/** The agent's own series (docs/agent.md). */
export function agentMetrics(registry: Registry) {
  return {
    connected: new Gauge({ name: 'sigil_agent_connected', help: '1 while the Sync stream is open', registers: [registry] }),
    generation: new Gauge({
      name: 'sigil_agent_applied_generation',
      help: 'Last applied desired-state generation',
      registers: [registry],
    }),
    managed: new Gauge({ name: 'sigil_agent_managed_secrets', help: 'Secrets this agent manages', registers: [registry] }),
    syncs: new Counter({
      name: 'sigil_agent_syncs_total',
      help: 'Desired-state syncs by outcome',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    secretFailures: new Counter({
      name: 'sigil_agent_secret_failures_total',
      help: 'Secret writes that failed or met a conflict, by reason (the constant reasons of SecretFailureReason)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    repairs: new Counter({
      name: 'sigil_agent_drift_repairs_total',
      help: 'Managed Secrets restored after a manual edit or deletion',
      registers: [registry],
    }),
    injectionGrants: new Counter({
      name: 'sigil_agent_injection_grants_total',
      help: 'Answers with values handed to an injected pod (init container or sidecar)',
      registers: [registry],
    }),
    injectionRefusals: new Counter({
      name: 'sigil_agent_injection_refusals_total',
      help: 'Injection fetches refused, by reason (token-invalid, not-a-consumer, app-not-published, ...)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    injectionMutations: new Counter({
      name: 'sigil_agent_injection_mutations_total',
      help: 'Pod admissions seen by the injection webhook, by outcome (patched, skipped, denied, error)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
  };
}

export type AgentMetrics = ReturnType<typeof agentMetrics>;

/** Counts the failed and conflicting writes among `statuses` by their constant reason (a bounded label set, never a value). */
export function countSecretFailures(counter: AgentMetrics['secretFailures'], statuses: readonly SecretStatus[]): void {
  for (const s of statuses)
    if (s.state === SecretState.SECRET_STATE_FAILED || s.state === SecretState.SECRET_STATE_CONFLICT) counter.inc({ reason: s.reason });
}
