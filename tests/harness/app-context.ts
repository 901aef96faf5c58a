import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { createLogger } from '@sigil/logging';
import { AgentGrpcServer } from '../../apps/control-plane/src/agent-api/agent-grpc.server.js';
import { AppModule } from '../../apps/control-plane/src/app.module.js';
import { AppsService } from '../../apps/control-plane/src/apps/apps.service.js';
import type { Actor } from '../../apps/control-plane/src/auth/policy.js';
import { ClustersService } from '../../apps/control-plane/src/clusters/clusters.service.js';
import { PublicationsService } from '../../apps/control-plane/src/publications/publications.service.js';
import { ProjectsService } from '../../apps/control-plane/src/projects/projects.service.js';
import { SecretsService } from '../../apps/control-plane/src/secrets/secrets.service.js';
import { RuntimeConfig } from '../../apps/control-plane/src/config/runtime-config.js';
import { loadConfig, type Role } from '../../apps/control-plane/src/config/sigil-config.js';
import { createTestDatabase, testEnv, testHsmToken, uniqueName } from './test-env.js';

export interface TestApp {
  app: INestApplicationContext;
  databaseUrl: string;
  keyLabelPrefix: string;
  /** Closes the application (as a restart would); the database survives for the next one. */
  close(): Promise<void>;
  /** Closes and drops the database. */
  dispose(): Promise<void>;
}

/**
 * The control plane's modules in-process (no HTTP listener) against the harness' real
 * PostgreSQL, Redis and SoftHSM. Each call gets its own database and HSM key-label prefix
 * unless given an existing one (to simulate a restart).
 */
export async function startTestApp(
  opts: { roles?: Role[]; reuse?: Pick<TestApp, 'databaseUrl' | 'keyLabelPrefix'>; env?: Record<string, string>; redisUrl?: string } = {},
): Promise<TestApp> {
  const db = opts.reuse ? undefined : await createTestDatabase();
  const databaseUrl = opts.reuse?.databaseUrl ?? db!.url;
  const keyLabelPrefix = opts.reuse?.keyLabelPrefix ?? uniqueName('t').replace(/^t-/, 't').slice(0, 20).toLowerCase();
  const dataDir = await mkdtemp(path.join(tmpdir(), 'sigil-app-'));
  const config = loadConfig({
    SIGIL_DATA_DIR: dataDir,
    SIGIL_ROLES: (opts.roles ?? ['http', 'grpc', 'worker']).join(','),
    SIGIL_HSM_KEY_LABEL_PREFIX: keyLabelPrefix,
    SIGIL_HSM_POOL_SIZE: '2',
    SIGIL_GRPC_PORT: '0',
    ...opts.env,
  });
  const runtime = new RuntimeConfig(config, {
    databaseUrl,
    redisUrl: opts.redisUrl ?? testEnv().redis.url,
    hsmToken: testHsmToken(),
    redisPrefix: keyLabelPrefix,
  });
  const app = await NestFactory.createApplicationContext(AppModule.register(runtime, createLogger('test', 'warn')), { logger: false });
  await app.init();
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await app.close();
    await rm(dataDir, { recursive: true, force: true });
  };
  return {
    app,
    databaseUrl,
    keyLabelPrefix,
    close,
    dispose: async () => {
      await close();
      await db?.drop();
    },
  };
}

/** Where the test app's agent gRPC server listens, and the CA bundle agents trust. */
export function agentEndpoint(app: INestApplicationContext): { address: string; caPem: string } {
  const server = app.get(AgentGrpcServer);
  if (server.port === undefined || !server.caPem) throw new Error('the grpc role is not running in this test app');
  return { address: `localhost:${server.port}`, caPem: server.caPem };
}

/** Registers a cluster (the key-custody tables reference clusters) and returns its id. */
export async function registerCluster(app: INestApplicationContext, name = uniqueName('c')): Promise<string> {
  return (await app.get(ClustersService).register(name, {})).id;
}

/**
 * What most delivery tests start from, through the services: project `project`, allowed on
 * every cluster and in `namespace`, with app `app` (env delivery) holding `secrets` (name → data).
 */
export async function projectWithApp(
  app: INestApplicationContext,
  actor: Actor,
  where: { project: string; app: string; namespace: string },
  secrets: Record<string, Record<string, string>> = {},
): Promise<void> {
  await app.get(ProjectsService).create({ name: where.project });
  await app.get(ProjectsService).setNamespaces(actor, where.project, [where.namespace]);
  await app.get(PublicationsService).setProjectSelector(actor, where.project, {});
  await app.get(AppsService).create(actor, where.project, { name: where.app, namespace: where.namespace, deliveryMode: 'env' });
  for (const [name, data] of Object.entries(secrets)) await app.get(SecretsService).create(actor, where.project, where.app, { name, data });
}
