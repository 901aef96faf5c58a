import 'reflect-metadata';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createLogger } from '@sigil/logging';
import { ApiTokenRepository } from './auth/api-token.repository.js';
import { bootstrapAdminToken } from './auth/bootstrap-admin-token.js';
import { RuntimeConfig } from './config/runtime-config.js';
import { ConfigError, loadConfig } from './config/sigil-config.js';
import { resolveServices } from './embedded/embedded-stack.js';
import { ReadinessService } from './health/readiness.service.js';
import { consoleDirectory } from './http/console-assets.js';
import { createHttpApp } from './http/http-app.js';

/**
 * Composition root: validate configuration, bring up (or locate) PostgreSQL, Redis and the
 * HSM, start the Nest application, and tear everything down again on SIGINT/SIGTERM.
 */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`sigil-control-plane: ${err.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }
  // Secrets read into the typed config leave the environment: nothing later (child processes,
  // diagnostics) can pick them up from there.
  for (const name of ['SIGIL_PKCS11_PIN', 'SIGIL_BOOTSTRAP_ADMIN_TOKEN', 'DATABASE_URL', 'REDIS_URL']) delete process.env[name];
  const logger = createLogger('control-plane', config.log.level);
  const services = await resolveServices(config, logger);
  const runtime = new RuntimeConfig(config, services);

  let app: Awaited<ReturnType<typeof createHttpApp>> | undefined;
  let stopping = false;
  const shutdown = async (reason: string, code: number) => {
    if (stopping) return;
    stopping = true;
    logger.info({ reason }, 'shutting down');
    const force = setTimeout(() => {
      logger.error('graceful shutdown timed out; exiting');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    force.unref();
    const started = performance.now();
    try {
      await app?.close();
      const closedMs = Math.round(performance.now() - started);
      await services.stop();
      logger.info({ ms: Math.round(performance.now() - started), appMs: closedMs }, 'shut down');
    } finally {
      logger.flush();
      process.exit(code);
    }
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void shutdown(signal, 0));

  try {
    app = await createHttpApp(runtime, logger);
    const admin = await bootstrapAdminToken(app.get(ApiTokenRepository), config.dataDir, config.bootstrapAdminToken);
    await app.listen(config.http.port, config.http.host);
    const readiness = await app.get(ReadinessService).evaluate();
    const base = `http://${config.http.host}:${config.http.port}`;
    logger.info({ url: base, ready: readiness.ready, failed: readiness.failed }, 'control plane listening');
    printBanner(base, config.dataDir, admin, readiness.ready);
  } catch (err) {
    logger.fatal({ err }, 'start-up failed');
    await shutdown('start-up failed', 1);
  }
}

function consoleBuilt(): boolean {
  return existsSync(path.join(consoleDirectory(), 'index.html'));
}

function printBanner(base: string, dataDir: string, admin: Awaited<ReturnType<typeof bootstrapAdminToken>>, ready: boolean): void {
  if (process.env.SIGIL_BANNER !== '1') return;
  const token =
    admin.kind === 'generated'
      ? `${admin.file} (mode 0600, created now)`
      : admin.kind === 'from-environment'
        ? 'SIGIL_BOOTSTRAP_ADMIN_TOKEN'
        : `${dataDir}/admin-token (if this data dir created it)`;
  process.stderr.write(
    [
      '',
      `Sigil control plane is ${ready ? 'ready' : 'up, but not ready (see /readyz)'}`,
      consoleBuilt()
        ? `  Console      ${base}/console/  (sign in with the admin token)`
        : '  Console      not built (`make build` builds it)',
      `  REST API     ${base}/api/v1`,
      `  OpenAPI      ${base}/api/docs  (JSON: ${base}/api/docs-json)`,
      `  Health       ${base}/healthz  ${base}/readyz`,
      `  Metrics      ${base}/metrics`,
      `  Admin token  ${token}`,
      `  Data         ${dataDir}`,
      '  Ctrl-C stops the control plane and everything it started.',
      '',
    ].join('\n'),
  );
}

void main();
