import { readFile } from 'node:fs/promises';
import { once } from 'node:events';
import { createLogger } from '@sigil/logging';
import { Agent } from './agent.js';
import { agentCommand, type AgentConfig } from './agent-config.js';
import { agentMetricsRegistry } from './metrics.js';
import { FileIdentityStore, MemoryIdentityStore, SecretIdentityStore, type IdentityStore } from './identity-store.js';
import { startInjection } from './inject/injection.js';
import { KubeClient, inClusterAccess, kubeconfigAccess } from './kube/kube-client.js';
import { WorkloadRestarter } from './restarts.js';

const VERSION = 'sigil-agent/0.1.0';

// Not `import ... from 'node:http'`: an ES import of node:http materialises all its exports,
// including the lazy WebSocket/MessageEvent/CloseEvent, which loads Node's bundled undici with
// web streams and worker_threads, which the agent never uses: 2.6 MiB of its idle RSS when run
// from the ES build (docs/decisions/007). The shipped bundle require()s it either way.
const { createServer } = process.getBuiltinModule('node:http');

/** Composition root of the edge agent: configuration, Kubernetes client, identity store, health and metrics. */
async function main(): Promise<void> {
  const program = agentCommand();
  program.parse();
  const config = program.opts<AgentConfig>();
  const logger = createLogger('agent', config.logLevel);
  const fail = (message: string): never => {
    process.stderr.write(`sigil-agent: ${message}\n`);
    process.exit(78);
  };
  if (config.enrollmentTokenFile && config.serviceAccountTokenFile)
    fail('give --enrollment-token-file or --service-account-token-file, not both');
  if ([config.stateSecret !== undefined, config.stateDir !== undefined, config.stateMemory === true].filter(Boolean).length !== 1)
    fail('give exactly one of --state-secret, --state-dir or --state-memory');
  if (config.stateMemory && !config.serviceAccountTokenFile)
    fail('--state-memory enrolls again at every start, which needs --service-account-token-file (a bootstrap token is one-time)');
  if (config.inject && !config.injectImage) fail('--inject needs --inject-image (the image of the injector init container and sidecar)');
  if ((config.injectCacheDir === undefined) !== (config.injectCacheKeyFile === undefined))
    fail('give --inject-cache-dir and --inject-cache-key-file together');
  if (config.inject && !config.injectService && !config.injectUrl)
    fail('--inject needs --inject-service (or --inject-url): the address injected pods reach the agent at');

  const kc = (() => {
    try {
      return new KubeClient(config.kubeconfig ? kubeconfigAccess(config.kubeconfig) : inClusterAccess());
    } catch (err) {
      return fail((err as Error).message);
    }
  })();
  let store: IdentityStore;
  if (config.stateSecret) {
    const [namespace, name] = config.stateSecret.split('/') as [string, string];
    store = new SecretIdentityStore(kc, namespace, name);
  } else if (config.stateDir) store = new FileIdentityStore(config.stateDir);
  else store = new MemoryIdentityStore();
  const caPem = await readFile(config.caFile, 'utf8').catch(() => fail(`cannot read --ca-file ${config.caFile}`));

  const registry = agentMetricsRegistry();
  const agent = new Agent(
    {
      address: config.controlPlane,
      caPem,
      cluster: config.cluster,
      credential: config.enrollmentTokenFile
        ? { kind: 'bootstrap-token', file: config.enrollmentTokenFile }
        : config.serviceAccountTokenFile
          ? { kind: 'service-account-token', file: config.serviceAccountTokenFile }
          : undefined,
      namespaces: config.namespaces,
      version: VERSION,
      injecting: config.inject === true,
      // Tests only: holds each sync open while this file exists (AgentOptions.syncGate).
      ...(process.env.SIGIL_AGENT_TEST_SYNC_GATE ? { syncGate: process.env.SIGIL_AGENT_TEST_SYNC_GATE } : {}),
    },
    store,
    kc,
    logger,
    registry,
    config.restartWorkloads ? new WorkloadRestarter(kc, logger, config.restartMinInterval * 1000) : undefined,
  );

  const server = createServer((req, res) => {
    if (req.url === '/healthz') res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    else if (req.url === '/readyz')
      res.writeHead(agent.ready ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ ready: agent.ready }));
    else if (req.url === '/metrics')
      registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
        () => res.writeHead(500).end(),
      );
    else res.writeHead(404).end();
  });
  server.listen(config.metricsPort, config.metricsHost);
  await once(server, 'listening');

  const injection = config.inject
    ? await startInjection(
        {
          host: config.injectHost,
          port: config.injectPort,
          service: config.injectService,
          webhook: config.injectWebhook,
          image: config.injectImage!,
          audience: config.injectAudience,
          url: config.injectUrl,
          names: config.injectNames ?? [],
          resources: config.injectResources,
          cacheDir: config.injectCacheDir,
          cacheKeyFile: config.injectCacheKeyFile,
          cacheMaxAgeMs: config.injectCacheMaxAge * 1000,
        },
        agent,
        kc,
        agent.metrics,
        logger,
      ).catch((err: unknown) => fail(`cannot serve injection: ${(err as Error).message}`))
    : undefined;

  const stop = (signal: string) => {
    logger.info({ signal }, 'agent stopping');
    void Promise.all([injection?.stop(), agent.stop()]).finally(() => {
      server.close(() => process.exit(0));
      server.closeAllConnections();
    });
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));

  await agent.start().catch((err: unknown) => {
    logger.fatal({ err: { message: (err as Error).message } }, 'agent could not start');
    process.exit(1);
  });
  logger.info({ controlPlane: config.controlPlane, cluster: config.cluster, state: store.where }, 'agent running');
}

void main();
