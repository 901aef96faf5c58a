import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { PinoLogger } from 'nestjs-pino';
import { createLogger } from '@sigil/logging';
import { RuntimeConfig } from '../../apps/control-plane/src/config/runtime-config.js';
import { loadConfig } from '../../apps/control-plane/src/config/sigil-config.js';
import { HsmService } from '../../apps/control-plane/src/hsm/hsm.service.js';
import { ensureSoftHsmToken } from '../../apps/control-plane/src/hsm/softhsm-dev-token.js';
import type { RawLoopInput } from './raw-loop.js';
import { rawRate } from './raw-rate.js';
import { valueAad } from '@sigil/envelope';

/**
 * bench/hsm: Sigil's HSM operations (HsmService: worker threads, batching, message passing)
 * against the raw pkcs11js rate of the same mechanisms, measured in the same run on a fresh
 * SoftHSM token, at 1, 2 and 4 concurrent calls. Prints a table and writes
 * bench/results/hsm.{json,md}.
 *
 *   make bench-hsm            # BENCH_MS=3000 per measurement by default
 */
const MS = Number(process.env.BENCH_MS ?? 3000);
const SECRETS_PER_CLUSTER = 10;
const CLUSTERS_PER_CALL = 50;
const CONCURRENCY = [1, 2, 4];
const TARGET = 0.7;

async function raw(token: { module: string; tokenLabel: string; pin: string }, op: RawLoopInput['op'], threads: number): Promise<number> {
  return rawRate(new URL('./raw-loop.js', import.meta.url), { ...token, op, ms: MS, secretsPerCluster: SECRETS_PER_CLUSTER }, threads);
}

async function sigil(hsm: HsmService, op: 'ingest' | 'envelope', concurrency: number): Promise<number> {
  const value = randomBytes(1024);
  const aad = valueAad({ projectId: 'p', app: 'a', secret: 's', secretId: 'i', version: 1 });
  // Fixtures for envelopes: data keys and cluster keys, wrapped as they are stored.
  const sealed = await hsm.seal(
    1,
    Array.from({ length: SECRETS_PER_CLUSTER }, () => ({ plaintext: Buffer.from(value), aad })),
  );
  const deks = sealed.map((s) => ({ rootKeyVersion: 1, wrapped: s.wrappedDek }));
  const { generateAgentKeyPair, rsaPublicKeyComponents } = await import('@sigil/envelope');
  const cluster = await hsm.createClusterKey(1, rsaPublicKeyComponents(generateAgentKeyPair().publicKeyDer));
  const items = Array.from({ length: CLUSTERS_PER_CALL }, () => ({ clusterKey: { rootKeyVersion: 1, wrapped: cluster.forStorage }, deks }));

  const deadline = performance.now() + MS;
  let ops = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        if (op === 'ingest') {
          await hsm.seal(1, [{ plaintext: Buffer.from(value), aad }]);
          ops += 1;
        } else {
          await hsm.wrapForClusters(items);
          ops += CLUSTERS_PER_CALL * SECRETS_PER_CLUSTER;
        }
      }
    }),
  );
  return ops / ((performance.now() - started) / 1000);
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'sigil-bench-hsm-'));
  const hsmToken = await ensureSoftHsmToken(path.join(dir, 'softhsm'), 'bench');
  const pin = (await readFile(path.join(dir, 'softhsm', 'pin'), 'utf8')).trim();
  const token = { module: hsmToken.module, tokenLabel: hsmToken.tokenLabel, pin };
  const rows: Array<{ operation: string; concurrency: number; sigil: number; raw: number; ratio: number }> = [];
  let workers: number | undefined;
  const logger = new PinoLogger({ pinoHttp: { logger: createLogger('bench', 'warn') } });
  try {
    // Sigil as deployed: the default number of HSM workers (CPU count, at most 4); the load varies.
    const config = loadConfig({ SIGIL_DATA_DIR: dir, SIGIL_HSM_KEY_LABEL_PREFIX: 'bench' });
    const hsm = new HsmService(
      new RuntimeConfig(config, { databaseUrl: 'postgres://unused', redisUrl: 'redis://unused', hsmToken }),
      logger,
    );
    await hsm.onModuleInit();
    await hsm.generateRootKey(1);
    workers = hsm.capabilities.workers;
    for (const concurrency of CONCURRENCY) {
      for (const op of ['ingest', 'envelope'] as const) {
        const rawRate = await raw(token, op, concurrency);
        const ours = await sigil(hsm, op, concurrency);
        rows.push({
          operation:
            op === 'ingest'
              ? 'encrypt-on-ingest (1 KiB)'
              : `envelope (${SECRETS_PER_CLUSTER} secrets × ${CLUSTERS_PER_CALL} clusters per call)`,
          concurrency,
          sigil: Math.round(ours),
          raw: Math.round(rawRate),
          ratio: ours / rawRate,
        });
      }
    }
    await hsm.destroyRootKey(1);
    await hsm.onApplicationShutdown();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }

  const best = (op: string, key: 'sigil' | 'raw') => Math.max(...rows.filter((r) => r.operation.startsWith(op)).map((r) => r[key]));
  const summary = ['encrypt-on-ingest', 'envelope'].map((op) => ({
    operation: op,
    bestSigil: best(op, 'sigil'),
    bestRaw: best(op, 'raw'),
    ratio: best(op, 'sigil') / best(op, 'raw'),
  }));
  const machine = `${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} CPUs, Node ${process.version}, SoftHSM; Sigil with ${workers ?? '?'} HSM workers; raw = one pkcs11js thread per concurrent call`;
  const table = [
    `| operation | concurrent calls | Sigil ops/s | raw pkcs11js ops/s | ratio |`,
    `|---|---|---|---|---|`,
    ...rows.map((r) => `| ${r.operation} | ${r.concurrency} | ${r.sigil} | ${r.raw} | ${(r.ratio * 100).toFixed(0)}% |`),
    '',
    `| best of each | Sigil ops/s | raw ops/s | ratio | target |`,
    `|---|---|---|---|---|`,
    ...summary.map(
      (s) =>
        `| ${s.operation} | ${s.bestSigil} | ${s.bestRaw} | ${(s.ratio * 100).toFixed(0)}% | ≥ ${TARGET * 100}% ${s.ratio >= TARGET ? '✓' : '✗'} |`,
    ),
  ].join('\n');
  process.stdout.write(`\nbench/hsm — ${machine}, ${MS} ms per measurement\n\n${table}\n`);
  const results = path.join(fileURLToPath(new URL('../../../bench/results', import.meta.url)));
  await mkdir(results, { recursive: true });
  await writeFile(
    path.join(results, 'hsm.json'),
    JSON.stringify({ machine, ms: MS, rows, summary, at: new Date().toISOString() }, null, 2),
  );
  await writeFile(path.join(results, 'hsm.md'), `bench/hsm — ${machine}\n\n${table}\n`);
  const envelope = summary.find((s) => s.operation === 'envelope')!;
  if (envelope.ratio < TARGET) {
    process.stderr.write(`envelope creation at ${(envelope.ratio * 100).toFixed(0)}% of the raw rate, below the ${TARGET * 100}% target\n`);
    process.exitCode = 1;
  }
}

await main();
