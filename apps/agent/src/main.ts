import { createServer } from 'node:http';
import { once } from 'node:events';
import { createLogger } from '@sigil/logging';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { agentCommand, type AgentConfig } from './agent-config.js';

/**
 * Composition root of the edge agent. Today it validates its configuration and serves
 * /healthz and /metrics; enrollment, the watch loop and Secret writing arrive with the
 * agent-protocol and edge-agent work.
 */
async function main(): Promise<void> {
  const program = agentCommand();
  program.parse();
  const config = program.opts<AgentConfig>();
  const logger = createLogger('agent', config.logLevel);

  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const server = createServer((req, res) => {
    if (req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    } else if (req.url === '/metrics') {
      void registry.metrics().then((body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body));
    } else {
      res.writeHead(404).end();
    }
  });
  server.listen(config.metricsPort, config.metricsHost);
  await once(server, 'listening');
  logger.info(
    { metrics: `http://${config.metricsHost}:${config.metricsPort}/metrics`, controlPlane: config.controlPlane ?? null },
    'agent started (enrollment and delivery not implemented yet)',
  );

  const stop = (signal: string) => {
    logger.info({ signal }, 'agent stopping');
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

void main();
