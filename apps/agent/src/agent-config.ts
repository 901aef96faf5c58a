import { Command, InvalidArgumentError, Option } from 'commander';

/** The agent's settings; every flag can also come from an environment variable (12-factor, Helm-friendly). */
export interface AgentConfig {
  controlPlane: string | undefined;
  caFile: string | undefined;
  enrollmentTokenFile: string | undefined;
  kubeconfig: string | undefined;
  stateDir: string;
  metricsHost: string;
  metricsPort: number;
  logLevel: string;
}

function port(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 65535) throw new InvalidArgumentError('must be an integer port between 1 and 65535');
  return n;
}

export function agentCommand(): Command {
  return new Command('sigil-agent')
    .description(
      'Sigil edge agent: enrolls with the control plane, pulls encrypted secrets for this cluster and writes Kubernetes Secrets.',
    )
    .addOption(new Option('--control-plane <host:port>', 'control-plane gRPC address').env('SIGIL_CONTROL_PLANE'))
    .addOption(new Option('--ca-file <path>', 'CA bundle that verifies the control plane').env('SIGIL_CA_FILE'))
    .addOption(new Option('--enrollment-token-file <path>', 'one-time bootstrap token').env('SIGIL_ENROLLMENT_TOKEN_FILE'))
    .addOption(new Option('--kubeconfig <path>', 'kubeconfig (default: in-cluster)').env('KUBECONFIG'))
    .addOption(
      new Option('--state-dir <path>', 'where the agent keeps its key and certificate')
        .env('SIGIL_AGENT_STATE_DIR')
        .default('/var/lib/sigil-agent'),
    )
    .addOption(new Option('--metrics-host <host>', 'address of /healthz and /metrics').env('SIGIL_AGENT_METRICS_HOST').default('0.0.0.0'))
    .addOption(
      new Option('--metrics-port <port>', 'port of /healthz and /metrics').env('SIGIL_AGENT_METRICS_PORT').default(9464).argParser(port),
    )
    .addOption(
      new Option('--log-level <level>', 'log level')
        .env('SIGIL_LOG_LEVEL')
        .choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace'])
        .default('info'),
    );
}
