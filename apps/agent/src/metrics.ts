/**
 * The agent's /metrics: a few gauges and counters in the Prometheus text format, plus the
 * process metrics, computed when scraped. Not prom-client: its entry point loads cluster,
 * perf_hooks, its Pushgateway and @opentelemetry/api, and its default collectors keep an
 * event-loop-delay timer and a GC observer running; together about 1.5 MiB of the agent's
 * idle RSS (docs/decisions/007). Metric names are prom-client's, so dashboards keep working.
 */
type Labels = Record<string, string>;
type Kind = 'gauge' | 'counter';

interface Family {
  name: string;
  help: string;
  kind: Kind;
  samples(): Iterable<[Labels, number]>;
}

const escapeHelp = (s: string) => s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
const escapeLabel = (s: string) => s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const labelText = (labels: Labels) => {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return pairs.length ? `{${pairs.join(',')}}` : '';
};

/** A value per label set. An unlabelled series reads 0 until set; a labelled one shows only the sets it has seen. */
class Series {
  private readonly values = new Map<string, [Labels, number]>();

  constructor(private readonly labelled: boolean) {}

  protected add(labels: Labels, by: number, set: boolean): void {
    const key = JSON.stringify(labels);
    const current = this.values.get(key)?.[1] ?? 0;
    this.values.set(key, [labels, set ? by : current + by]);
  }

  samples(): Iterable<[Labels, number]> {
    return this.values.size || this.labelled ? this.values.values() : [[{}, 0]];
  }
}

export class Gauge extends Series {
  set(value: number): void {
    this.add({}, value, true);
  }
}

export class Counter<L extends string = never> extends Series {
  inc(labels?: Record<L, string>): void {
    this.add(labels ?? {}, 1, false);
  }
}

export class MetricsRegistry {
  readonly contentType = 'text/plain; version=0.0.4; charset=utf-8';
  private readonly families: Family[] = [];

  gauge(name: string, help: string): Gauge {
    const g = new Gauge(false);
    this.families.push({ name, help, kind: 'gauge', samples: () => g.samples() });
    return g;
  }

  counter<L extends string = never>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    const c = new Counter<L>(labelNames.length > 0);
    this.families.push({ name, help, kind: 'counter', samples: () => c.samples() });
    return c;
  }

  /** A value read when scraped. */
  collect(name: string, help: string, kind: Kind, read: () => number | Iterable<[Labels, number]>): void {
    this.families.push({
      name,
      help,
      kind,
      samples: () => {
        const v = read();
        return typeof v === 'number' ? [[{}, v]] : v;
      },
    });
  }

  metrics(): string {
    let out = '';
    for (const f of this.families) {
      out += `# HELP ${f.name} ${escapeHelp(f.help)}\n# TYPE ${f.name} ${f.kind}\n`;
      for (const [labels, value] of f.samples()) out += `${f.name}${labelText(labels)} ${value}\n`;
    }
    return out;
  }
}

/** The process metrics that matter for a small idle agent, under prom-client's default names. */
export function registerProcessMetrics(registry: MetricsRegistry): void {
  const cpu = (part: 'user' | 'system' | 'total') => () => {
    const u = process.cpuUsage();
    return (part === 'user' ? u.user : part === 'system' ? u.system : u.user + u.system) / 1e6;
  };
  registry.collect('process_cpu_user_seconds_total', 'Total user CPU time spent in seconds.', 'counter', cpu('user'));
  registry.collect('process_cpu_system_seconds_total', 'Total system CPU time spent in seconds.', 'counter', cpu('system'));
  registry.collect('process_cpu_seconds_total', 'Total user and system CPU time spent in seconds.', 'counter', cpu('total'));
  const startTime = Math.round(Date.now() / 1000 - process.uptime());
  registry.collect('process_start_time_seconds', 'Start time of the process since unix epoch in seconds.', 'gauge', () => startTime);
  registry.collect('process_resident_memory_bytes', 'Resident memory size in bytes.', 'gauge', () => process.memoryUsage.rss());
  const memory = (key: 'heapTotal' | 'heapUsed' | 'external') => () => process.memoryUsage()[key];
  registry.collect('nodejs_heap_size_total_bytes', 'Process heap size from Node.js in bytes.', 'gauge', memory('heapTotal'));
  registry.collect('nodejs_heap_size_used_bytes', 'Process heap size used from Node.js in bytes.', 'gauge', memory('heapUsed'));
  registry.collect('nodejs_external_memory_bytes', 'Node.js external memory size in bytes.', 'gauge', memory('external'));
  const [major = '', minor = '', patch = ''] = process.versions.node.split('.');
  registry.collect('nodejs_version_info', 'Node.js version info.', 'gauge', () => [[{ version: process.version, major, minor, patch }, 1]]);
}
