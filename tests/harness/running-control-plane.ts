import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ApiClient } from './api-client.js';
import { ControlPlaneProcess, hsmEnv } from './control-plane-process.js';
import { createTestDatabase, testEnv, uniqueName } from './test-env.js';

export const ADMIN_TOKEN = `sgl_e2e-admin-${'0'.repeat(32)}`;

export interface RunningControlPlane {
  /** The first process (tests may point it at a restarted one). */
  cp: ControlPlaneProcess;
  admin: ApiClient;
  databaseUrl: string;
  redisPrefix: string;
  /** Another replica on the same PostgreSQL, Redis and HSM keys (stopped by stop()). */
  startReplica(env?: Record<string, string>): Promise<{ cp: ControlPlaneProcess; admin: ApiClient }>;
  stop(): Promise<void>;
}

/** A control-plane process on the harness' services, with its own database and HSM key prefix. */
export async function startControlPlane(env: Record<string, string> = {}): Promise<RunningControlPlane> {
  const dir = await mkdtemp(path.join(tmpdir(), 'sigil-e2e-'));
  const db = await createTestDatabase();
  const prefix = uniqueName('e').replace(/-/g, '').slice(0, 20);
  const shared = {
    SIGIL_DATA_DIR: dir,
    DATABASE_URL: db.url,
    REDIS_URL: testEnv().redis.url,
    SIGIL_HSM_KEY_LABEL_PREFIX: prefix,
    SIGIL_REDIS_PREFIX: prefix,
    SIGIL_BOOTSTRAP_ADMIN_TOKEN: ADMIN_TOKEN,
    SIGIL_HSM_POOL_SIZE: '2',
    ...hsmEnv(),
    ...env,
  };
  const cp = await ControlPlaneProcess.start(shared);
  const replicas: ControlPlaneProcess[] = [];
  return {
    cp,
    admin: new ApiClient(cp.url, ADMIN_TOKEN),
    databaseUrl: db.url,
    redisPrefix: prefix,
    async startReplica(extra = {}) {
      const replica = await ControlPlaneProcess.start({ ...shared, ...extra });
      replicas.push(replica);
      return { cp: replica, admin: new ApiClient(replica.url, ADMIN_TOKEN) };
    },
    async stop() {
      await Promise.all([cp, ...replicas].map((p) => p.stop()));
      await db.drop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
