import { describe, expect, it } from '@jest/globals';
import { MetricsRegistry, registerProcessMetrics } from './metrics.js';

describe('MetricsRegistry', () => {
  it('writes gauges and counters in the Prometheus text format', () => {
    const r = new MetricsRegistry();
    const g = r.gauge('g', 'a "gauge"\nwith \\ two lines');
    const c = r.counter('c_total', 'by outcome', ['outcome']);
    const plain = r.counter('p_total', 'plain');
    r.counter('unused_total', 'labelled, never incremented', ['x']);
    g.set(3);
    g.set(7);
    c.inc({ outcome: 'ok' });
    c.inc({ outcome: 'ok' });
    c.inc({ outcome: 'a"b\\c\nd' });
    expect(r.metrics()).toBe(
      [
        '# HELP g a "gauge"\\nwith \\\\ two lines',
        '# TYPE g gauge',
        'g 7',
        '# HELP c_total by outcome',
        '# TYPE c_total counter',
        'c_total{outcome="ok"} 2',
        'c_total{outcome="a\\"b\\\\c\\nd"} 1',
        '# HELP p_total plain',
        '# TYPE p_total counter',
        'p_total 0',
        '# HELP unused_total labelled, never incremented',
        '# TYPE unused_total counter',
        '',
      ].join('\n'),
    );
    plain.inc();
    expect(r.metrics()).toContain('\np_total 1\n');
  });

  it('reads the process metrics when scraped, under prom-client’s names', () => {
    const r = new MetricsRegistry();
    registerProcessMetrics(r);
    const text = r.metrics();
    const value = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1]);
    expect(value('process_resident_memory_bytes')).toBeGreaterThan(1 << 20);
    expect(value('nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
    expect(value('nodejs_heap_size_total_bytes')).toBeGreaterThanOrEqual(value('nodejs_heap_size_used_bytes'));
    expect(value('nodejs_external_memory_bytes')).toBeGreaterThan(0);
    expect(value('process_cpu_seconds_total')).toBeCloseTo(
      value('process_cpu_user_seconds_total') + value('process_cpu_system_seconds_total'),
      1,
    );
    expect(Math.abs(value('process_start_time_seconds') - (Date.now() / 1000 - process.uptime()))).toBeLessThan(2);
    expect(text).toContain(`nodejs_version_info{version="${process.version}",major=`);
  });
});
