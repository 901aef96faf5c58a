import { Command, InvalidArgumentError, Option } from 'commander';
import { dns1123LabelProblem } from '@sigil/kubernetes';

/** The agent's settings; every flag can also come from an environment variable (12-factor, Helm-friendly). */
export interface AgentConfig {
  controlPlane: string;
  caFile: string;
  cluster: string;
  enrollmentTokenFile: string | undefined;
  serviceAccountTokenFile: string | undefined;
  kubeconfig: string | undefined;
  stateSecret: string | undefined;
  stateDir: string | undefined;
  stateMemory: boolean;
  namespaces: string[] | undefined;
  restartWorkloads: boolean;
  restartMinInterval: number;
  metricsHost: string;
  metricsPort: number;
  logLevel: string;
  inject: boolean;
  injectHost: string;
  injectPort: number;
  injectService: string | undefined;
  injectWebhook: string | undefined;
  injectImage: string | undefined;
  injectAudience: string;
  injectUrl: string | undefined;
  injectNames: string[] | undefined;
  injectResources: Record<string, unknown> | undefined;
  injectCacheDir: string | undefined;
  injectCacheKeyFile: string | undefined;
  injectCacheMaxAge: number;
}

function port(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 65535) throw new InvalidArgumentError('must be an integer port between 1 and 65535');
  return n;
}

function seconds(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('must be a whole number of seconds');
  return Number(value);
}

function dnsLabel(value: string): string {
  const problem = dns1123LabelProblem(value);
  if (problem) throw new InvalidArgumentError(problem);
  return value;
}

function namespaceList(value: string): string[] {
  const names = value
    .split(',')
    .map((n) => n.trim())
    .filter(Boolean);
  for (const n of names) dnsLabel(n);
  if (names.length === 0) throw new InvalidArgumentError('must name at least one namespace');
  return names;
}

function resources(value: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new InvalidArgumentError('must be JSON, e.g. {"requests":{"cpu":"10m","memory":"48Mi"}}');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new InvalidArgumentError('must be a JSON object');
  return parsed as Record<string, unknown>;
}

function nameList(value: string): string[] {
  return value
    .split(',')
    .map((n) => n.trim())
    .filter(Boolean);
}

function secretRef(value: string): string {
  const [ns, name, ...rest] = value.split('/');
  if (!ns || !name || rest.length) throw new InvalidArgumentError('must be <namespace>/<name>');
  dnsLabel(ns);
  return value;
}

export function agentCommand(): Command {
  return new Command('sigil-agent')
    .description(
      'Sigil edge agent: enrolls with the control plane, pulls encrypted secrets for this cluster and writes Kubernetes Secrets.',
    )
    .addOption(new Option('--control-plane <host:port>', 'control-plane gRPC address').env('SIGIL_CONTROL_PLANE').makeOptionMandatory())
    .addOption(
      new Option('--ca-file <path>', 'CA bundle that verifies the control plane (GET /api/v1/agents/trust)')
        .env('SIGIL_CA_FILE')
        .makeOptionMandatory(),
    )
    .addOption(
      new Option('--cluster <name>', 'this cluster’s registered name').env('SIGIL_CLUSTER').argParser(dnsLabel).makeOptionMandatory(),
    )
    .addOption(new Option('--enrollment-token-file <path>', 'enroll with this one-time bootstrap token').env('SIGIL_ENROLLMENT_TOKEN_FILE'))
    .addOption(
      new Option('--service-account-token-file <path>', 'enroll with this projected service-account token (Sigil audience)').env(
        'SIGIL_SERVICE_ACCOUNT_TOKEN_FILE',
      ),
    )
    .addOption(new Option('--kubeconfig <path>', 'kubeconfig (default: in-cluster)').env('KUBECONFIG'))
    .addOption(
      new Option('--state-secret <namespace/name>', 'keep the agent’s keys and certificate in this Secret')
        .env('SIGIL_AGENT_STATE_SECRET')
        .argParser(secretRef),
    )
    .addOption(new Option('--state-dir <path>', 'or in this directory (files mode 0600)').env('SIGIL_AGENT_STATE_DIR'))
    .addOption(
      new Option(
        '--state-memory',
        'or in memory only: nothing of the agent’s in etcd; it enrolls again at every start (needs --service-account-token-file)',
      ).env('SIGIL_AGENT_STATE_MEMORY'),
    )
    .addOption(
      new Option('--namespaces <a,b,...>', 'namespaces to serve (default: all, which needs cluster-wide Secret rights)')
        .env('SIGIL_AGENT_NAMESPACES')
        .argParser(namespaceList),
    )
    .addOption(
      new Option('--restart-workloads', 'restart workloads annotated sigil.dev/restart-on-change=true when a Secret they use changes').env(
        'SIGIL_AGENT_RESTART_WORKLOADS',
      ),
    )
    .addOption(
      new Option('--restart-min-interval <seconds>', 'at most one restart per workload in this time')
        .env('SIGIL_AGENT_RESTART_MIN_INTERVAL')
        .default(60)
        .argParser(seconds),
    )
    .addOption(
      new Option('--metrics-host <host>', 'address of /healthz, /readyz and /metrics').env('SIGIL_AGENT_METRICS_HOST').default('0.0.0.0'),
    )
    .addOption(
      new Option('--metrics-port <port>', 'port of /healthz, /readyz and /metrics')
        .env('SIGIL_AGENT_METRICS_PORT')
        .default(9464)
        .argParser(port),
    )
    .addOption(
      new Option('--inject', 'serve the injection webhook and the values of inject-mode apps to annotated pods (docs/injection.md)').env(
        'SIGIL_AGENT_INJECT',
      ),
    )
    .addOption(new Option('--inject-host <host>', 'address of the injection port').env('SIGIL_AGENT_INJECT_HOST').default('0.0.0.0'))
    .addOption(new Option('--inject-port <port>', 'the injection port (TLS)').env('SIGIL_AGENT_INJECT_PORT').default(8443).argParser(port))
    .addOption(
      new Option(
        '--inject-service <namespace/name>',
        'the Service in front of the injection port (certificate names, the injector’s address)',
      )
        .env('SIGIL_AGENT_INJECT_SERVICE')
        .argParser(secretRef),
    )
    .addOption(
      new Option('--inject-webhook <name>', 'the MutatingWebhookConfiguration whose caBundle the agent keeps current').env(
        'SIGIL_AGENT_INJECT_WEBHOOK',
      ),
    )
    .addOption(
      new Option('--inject-image <ref>', 'image of the injector init container and sidecar (the agent’s own)').env(
        'SIGIL_AGENT_INJECT_IMAGE',
      ),
    )
    .addOption(
      new Option('--inject-audience <audience>', 'audience of the pods’ projected tokens; only Sigil accepts it')
        .env('SIGIL_AGENT_INJECT_AUDIENCE')
        .default('sigil-inject'),
    )
    .addOption(
      new Option('--inject-url <url>', 'the address injected pods use (default https://<service>.<namespace>.svc:<port>)').env(
        'SIGIL_AGENT_INJECT_URL',
      ),
    )
    .addOption(
      new Option('--inject-names <a,b>', 'more DNS names or IPs for the serving certificate')
        .env('SIGIL_AGENT_INJECT_NAMES')
        .argParser(nameList),
    )
    .addOption(
      new Option('--inject-resources <json>', 'Kubernetes resources of the injector containers, as JSON')
        .env('SIGIL_AGENT_INJECT_RESOURCES')
        .argParser(resources),
    )
    .addOption(
      new Option(
        '--inject-cache-dir <path>',
        'keep a sealed copy of the inject-mode envelopes here, to serve pods after a restart while the control plane is unreachable',
      ).env('SIGIL_AGENT_INJECT_CACHE_DIR'),
    )
    .addOption(
      new Option(
        '--inject-cache-key-file <path>',
        'the 32-byte key that seals the cache; keep it out of etcd (a hostPath or CSI file; created if missing)',
      ).env('SIGIL_AGENT_INJECT_CACHE_KEY_FILE'),
    )
    .addOption(
      new Option(
        '--inject-cache-max-age <seconds>',
        'serve from a cache sealed at most this long ago (an agent cut off longer stops injecting)',
      )
        .env('SIGIL_AGENT_INJECT_CACHE_MAX_AGE')
        .default(7 * 86_400)
        .argParser(seconds),
    )
    .addOption(
      new Option('--log-level <level>', 'log level')
        .env('SIGIL_LOG_LEVEL')
        .choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace'])
        .default('info'),
    );
}
