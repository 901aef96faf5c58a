import { fork } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { DataSource } from 'typeorm';
import { SyncStreams } from '../../apps/control-plane/src/agent-api/sync-streams.js';
import { Actor } from '../../apps/control-plane/src/auth/policy.js';
import { ClustersService } from '../../apps/control-plane/src/clusters/clusters.service.js';
import { agentEndpoint, startTestApp, type TestApp } from '../harness/app-context.js';
import { repoRoot } from '../harness/repo-root.js';
import { enrollAgent, sleep, type EnrolledAgent } from '../harness/sync-session.js';
import { uniqueName } from '../harness/test-env.js';
import { eventually, holds } from '../harness/eventually.js';

// Opt-in measurement (SIGIL_IDLE_STREAMS=10000): the control plane's memory per idle Sync
// stream. Streams come from a child process (plain grpc-js + proto-loader) so its objects are
// not counted; each sends a Hello at the built generation, so nothing is sent back. 20 enrolled
// clusters share the streams (a certificate per cluster), ≤ 30 streams per connection.

const STREAMS = Number(process.env.SIGIL_IDLE_STREAMS ?? 0);
const CLUSTERS = 20;
const admin = new Actor('test', 'test-admin', 'admin', null);

(STREAMS > 0 ? describe : describe.skip)('memory of idle Sync streams', () => {
  let t: TestApp;
  const agents: EnrolledAgent[] = [];

  beforeAll(async () => {
    t = await startTestApp();
    const clusters = t.app.get(ClustersService);
    const { address, caPem } = agentEndpoint(t.app);
    for (let i = 0; i < CLUSTERS; i++) {
      const name = uniqueName('idle');
      await clusters.register(name, {});
      agents.push(await enrollAgent(address, caPem, name, (await clusters.createEnrollmentToken(admin, name)).token));
    }
  }, 120_000);

  afterAll(async () => {
    for (const a of agents) a.close();
    await t?.dispose();
  });

  it(`holds ${STREAMS} idle streams in a bounded amount of memory each`, async () => {
    const ds = t.app.get(DataSource);
    await eventually(
      'builds settled',
      async () => {
        const [row] = await ds.query<Array<{ n: number }>>(
          'SELECT count(*)::int AS n FROM clusters WHERE id = ANY($1::uuid[]) AND built_generation = desired_generation AND built_generation > 0',
          [agents.map((a) => a.clusterId)],
        );
        return holds(row!.n === CLUSTERS);
      },
      30_000,
      200,
    );
    const built = await ds.query<Array<{ id: string; g: string }>>(
      'SELECT id, built_generation::text AS g FROM clusters WHERE id = ANY($1::uuid[])',
      [agents.map((a) => a.clusterId)],
    );
    const dir = mkdtempSync(path.join(tmpdir(), 'sigil-idle-'));
    const { address, caPem } = agentEndpoint(t.app);
    writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({
        address,
        caPem,
        proto: path.join(repoRoot(), 'proto'),
        streams: STREAMS,
        agents: agents.map((a) => ({
          keyPem: a.keyPem,
          certPem: a.certificatePem,
          generation: built.find((b) => b.id === a.clusterId)!.g,
        })),
      }),
    );
    // Beside the repository's node_modules, so the child resolves grpc-js; removed afterwards.
    const script = path.join(repoRoot(), `.idle-client-${process.pid}.mjs`);
    writeFileSync(script, CLIENT);
    const streams = t.app.get(SyncStreams);
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    await sleep(500);
    const before = process.memoryUsage();
    const child = fork(script, [path.join(dir, 'config.json')], { cwd: repoRoot(), stdio: 'inherit' });
    try {
      await eventually(`${STREAMS} streams open`, () => holds(streams.size >= STREAMS), 180_000, 250);
      await sleep(6_000); // a sweep has run over all of them
      gc?.();
      await sleep(500);
      const after = process.memoryUsage();
      const per = (k: 'rss' | 'heapUsed') => (after[k] - before[k]) / STREAMS;
      const mib = (n: number) => (n / 1024 / 1024).toFixed(1);
      // eslint-disable-next-line no-console -- the measurement is the output
      console.log(
        `idle Sync streams: ${STREAMS} over ${Math.ceil(STREAMS / 30)} connections; rss ${mib(before.rss)} → ${mib(after.rss)} MiB ` +
          `(${(per('rss') / 1024).toFixed(1)} KiB/stream), heapUsed ${mib(before.heapUsed)} → ${mib(after.heapUsed)} MiB ` +
          `(${(per('heapUsed') / 1024).toFixed(1)} KiB/stream), gc ${gc ? 'forced' : 'not exposed'}`,
      );
      expect(streams.size).toBe(STREAMS);
      expect(per('rss')).toBeLessThan(60 * 1024);
    } finally {
      child.kill();
      rmSync(script, { force: true });
    }
  }, 300_000);
});

const CLIENT = `
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import * as loader from '@grpc/proto-loader';
const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const def = loader.loadSync('sigil/agent/v1/agent.proto', { includeDirs: [cfg.proto], longs: String, defaults: true, oneofs: true });
const Service = grpc.loadPackageDefinition(def).sigil.agent.v1.AgentService;
const PER_CONNECTION = 30;
const calls = [];
let opened = 0;
for (let c = 0; opened < cfg.streams; c++) {
  const a = cfg.agents[c % cfg.agents.length];
  const creds = grpc.credentials.createSsl(Buffer.from(cfg.caPem), Buffer.from(a.keyPem), Buffer.from(a.certPem));
  const client = new Service(cfg.address, creds, { 'grpc.use_local_subchannel_pool': 1 });
  for (let i = 0; i < PER_CONNECTION && opened < cfg.streams; i++, opened++) {
    const call = client.sync();
    call.on('error', () => undefined);
    call.on('data', () => undefined);
    call.write({ hello: { applied_generation: a.generation, agent_version: 'idle/1' } });
    calls.push(call);
  }
  if (c % 20 === 19) await new Promise((r) => setTimeout(r, 50));
}
setInterval(() => undefined, 60_000);
`;
