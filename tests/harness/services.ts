import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { EmbeddedPostgres } from '../../apps/control-plane/src/embedded/embedded-postgres.js';
import { EmbeddedRedis } from '../../apps/control-plane/src/embedded/embedded-redis.js';
import { openDatabase } from '../../apps/control-plane/src/database/data-source.js';
import { ensureSoftHsmToken } from '../../apps/control-plane/src/hsm/softhsm-dev-token.js';
import { KubeApiServer } from './kube-apiserver.js';
import { TEMPLATE_DATABASE, type TestEnvironment } from './test-env.js';

/**
 * Starts the real services once per `jest` run, on free ports and in a temp dir:
 * PostgreSQL (a template database with every migration applied), Redis, a fresh SoftHSM
 * token, and kube-apiserver + etcd. Tests isolate themselves inside these (own database,
 * key prefix, namespace) through the helpers in test-env.ts.
 */
export interface RunningServices {
  env: TestEnvironment;
  envFile: string;
  stop(): Promise<void>;
}

export async function startServices(): Promise<RunningServices> {
  const root = await mkdtemp(path.join(tmpdir(), 'sigil-test-'));
  await chmod(root, 0o711); // PostgreSQL's unprivileged server user must be able to enter it
  const postgres = new EmbeddedPostgres({ dir: path.join(root, 'postgres'), database: TEMPLATE_DATABASE, durable: false });
  const redis = new EmbeddedRedis({ dir: path.join(root, 'redis'), durable: false });
  const kube = new KubeApiServer(path.join(root, 'kube'));
  const started = Date.now();
  const stopAll = async () => {
    await Promise.allSettled([postgres.stop(), redis.stop(), kube.stop()]);
    if (process.env.SIGIL_KEEP_TEST_DIR !== '1') await rm(root, { recursive: true, force: true });
  };
  const starting = await Promise.allSettled([
    postgres.start(),
    redis.start(),
    kube.start(),
    ensureSoftHsmToken(path.join(root, 'softhsm'), 'sigil-test'),
  ] as const);
  // One that failed to start (a binary missing, a port taken) stops the others: none outlives the run.
  const failed = starting.find((r) => r.status === 'rejected');
  if (failed) {
    await stopAll();
    throw failed.reason;
  }
  const [templateUrl, redisUrl, kubeInfo, hsm] = starting.map((r) => (r as PromiseFulfilledResult<unknown>).value) as [
    string,
    string,
    Awaited<ReturnType<KubeApiServer['start']>>,
    Awaited<ReturnType<typeof ensureSoftHsmToken>>,
  ];
  try {
    const template = await openDatabase(templateUrl);
    await template.destroy();
  } catch (err) {
    await stopAll();
    throw err;
  }

  const env: TestEnvironment = {
    root,
    postgres: { adminUrl: postgres.urlFor('postgres'), templateUrl },
    redis: { url: redisUrl },
    hsm: { module: hsm.module, tokenLabel: hsm.tokenLabel, pinFile: path.join(root, 'softhsm', 'pin'), conf: process.env.SOFTHSM2_CONF! },
    kube: kubeInfo,
  };
  const file = path.join(root, 'test-env.json');
  await writeFile(file, JSON.stringify(env, null, 2), { mode: 0o600 });
  process.stderr.write(`\n[harness] PostgreSQL, Redis, SoftHSM, kube-apiserver+etcd up in ${Date.now() - started} ms (${root})\n`);
  return {
    env,
    envFile: file,
    stop: stopAll,
  };
}
