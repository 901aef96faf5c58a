import { describe, expect, it } from '@jest/globals';
import { SecretFailureReason, SecretState, type SecretStatus } from '@sigil/agent-protocol';
import { agentMetrics, agentMetricsRegistry, countSecretFailures, Counter } from './metrics.js';

describe('agentMetricsRegistry', () => {
  it('serves the process metrics under prom-client’s default names, read when scraped', async () => {
    const r = agentMetricsRegistry();
    const text = await r.metrics();
    const value = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1]);
    expect(value('process_resident_memory_bytes')).toBeGreaterThan(1 << 20);
    expect(value('nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
    expect(value('nodejs_heap_size_total_bytes')).toBeGreaterThanOrEqual(value('nodejs_heap_size_used_bytes'));
    expect(value('process_cpu_seconds_total')).toBeCloseTo(
      value('process_cpu_user_seconds_total') + value('process_cpu_system_seconds_total'),
      1,
    );
    expect(Math.abs(value('process_start_time_seconds') - (Date.now() / 1000 - process.uptime()))).toBeLessThan(2);
    expect(text).toContain(`nodejs_version_info{version="${process.version}",major=`);
    expect(text).toContain('# TYPE process_cpu_seconds_total counter');
  });

  it('registers the agent’s own series on it', async () => {
    const r = agentMetricsRegistry();
    const syncs = new Counter({ name: 'sigil_agent_syncs_total', help: 'h', labelNames: ['outcome'] as const, registers: [r] });
    syncs.inc({ outcome: 'ok' });
    syncs.inc({ outcome: 'ok' });
    expect(await r.metrics()).toContain('sigil_agent_syncs_total{outcome="ok"} 2');
  });

  it('counts failed and conflicting Secret writes by their constant reason, and nothing else', async () => {
    const r = agentMetricsRegistry();
    const m = agentMetrics(r);
    const status = (state: SecretState, reason: string): SecretStatus => ({
      target: { namespace: 'shop', name: 'env' },
      secretId: 's',
      version: 1,
      generation: 1n,
      state,
      reason,
      message: '',
    });
    countSecretFailures(m.secretFailures, [
      status(SecretState.SECRET_STATE_FAILED, SecretFailureReason.Forbidden),
      status(SecretState.SECRET_STATE_FAILED, SecretFailureReason.Forbidden),
      status(SecretState.SECRET_STATE_CONFLICT, SecretFailureReason.Conflict),
      status(SecretState.SECRET_STATE_APPLIED, ''),
      status(SecretState.SECRET_STATE_DELETED, ''),
    ]);
    const text = await r.metrics();
    expect(text).toContain('sigil_agent_secret_failures_total{reason="Forbidden"} 2');
    expect(text).toContain('sigil_agent_secret_failures_total{reason="Conflict"} 1');
    expect(text).not.toContain('sigil_agent_secret_failures_total{reason=""}');
  });
});
