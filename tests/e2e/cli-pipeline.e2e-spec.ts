import { statSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { ADMIN_TOKEN, startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import { runSigil, type SigilRun } from '../harness/sigil-cli.js';
import { uniqueName } from '../harness/test-env.js';
import { TestAgent, type TestSyncStream } from '../harness/test-agent.js';

// A release pipeline driven by the `sigil` CLI against a running control plane, with agents
// (protocol-level test clients) that apply what they are sent — one of them unable to.

describe('sigil CLI in a pipeline', () => {
  let cp: RunningControlPlane;
  let dir: string;
  let env: Record<string, string>;
  const project = uniqueName('shop');
  const agents: Array<{ agent: TestAgent; watch: TestSyncStream }> = [];
  const failing = new Set<string>();

  const sigil = (args: string[], input?: string, extraEnv: Record<string, string> = {}): Promise<SigilRun> =>
    runSigil(args, { ...env, ...extraEnv }, input);

  /** An agent that applies every generation it is told about (and fails where told to). */
  async function agentFor(cluster: string): Promise<void> {
    const token = (await sigil(['clusters', 'token', cluster])).stdout.trim();
    const caPem = (await cp.admin.get('/agents/trust')).body.caCertificatePem as string;
    const agent = new TestAgent(cp.cp.grpcAddress, caPem, cluster);
    await agent.enroll({ $case: 'bootstrapToken', value: token });
    const watch = agent.open({ autoApply: { fail: () => (failing.has(cluster) ? 'Conflict' : undefined) } });
    agents.push({ agent, watch });
  }

  beforeAll(async () => {
    cp = await startControlPlane();
    dir = await mkdtemp(path.join(tmpdir(), 'sigil-cli-'));
    env = { SIGIL_CONFIG: path.join(dir, 'config.json'), HOME: dir };
  });

  afterAll(async () => {
    for (const a of agents) {
      a.watch.cancel();
      a.agent.close();
    }
    await cp?.stop();
  });

  it('logs in with a token from stdin and keeps it in a 0600 file', async () => {
    const r = await sigil(['--server', cp.cp.url, 'login', '--name', 'ci'], ADMIN_TOKEN);
    expect(r).toMatchObject({ code: 0 });
    expect(r.stdout).toContain('logged in');
    expect(r.stdout).not.toContain(ADMIN_TOKEN);
    expect(statSync(env.SIGIL_CONFIG!).mode & 0o777).toBe(0o600);
    const bad = await sigil(['--token', 'sgl_not-a-real-token-000000000000', 'projects', 'list']);
    expect(bad.code).toBe(4);
  });

  it('configures a project, an app and secrets without ever echoing a value', async () => {
    expect((await sigil(['projects', 'create', project])).code).toBe(0);
    expect((await sigil(['projects', 'namespaces', project, 'shop'])).code).toBe(0);
    expect((await sigil(['apps', 'create', project, 'checkout', '--namespace', 'shop', '--mode', 'env'])).code).toBe(0);
    await writeFile(path.join(dir, 'cert.pem'), 'file-canary-7Hq');
    const set = await sigil([
      'secrets',
      'set',
      project,
      'checkout',
      'checkout-db',
      '--from-literal',
      'USER=app',
      '--from-file',
      `CERT=${path.join(dir, 'cert.pem')}`,
    ]);
    expect(set).toMatchObject({ code: 0 });
    expect(set.stdout).toContain('version 1 written (2 keys)');
    const again = await sigil(['secrets', 'set', project, 'checkout', 'checkout-db', '--stdin', 'PASSWORD'], 'stdin-canary-9Xz');
    expect(again.stdout).toContain('version 2 written (1 keys)');
    const listed = await sigil(['secrets', 'list', project, 'checkout']);
    const versions = await sigil(['-o', 'json', 'secrets', 'versions', project, 'checkout', 'checkout-db']);
    expect(JSON.parse(versions.stdout)).toHaveLength(2);
    for (const out of [set, again, listed, versions]) {
      for (const canary of ['file-canary-7Hq', 'stdin-canary-9Xz']) expect(out.stdout + out.stderr).not.toContain(canary);
    }
    const bad = await sigil(['secrets', 'set', project, 'checkout', 'x', '--from-literal', 'no-equals']);
    expect(bad.code).toBe(2);
  });

  it('publish --wait exits 0 once every agent has provisioned', async () => {
    for (const name of ['store-a', 'store-b'].map((n) => `${n}-${project}`.slice(0, 63))) {
      expect((await sigil(['clusters', 'register', name, '--label', 'tier=store'])).code).toBe(0);
      await agentFor(name);
    }
    expect((await sigil(['projects', 'allow-clusters', project, '--selector', 'tier=store'])).code).toBe(0);
    const r = await sigil(['publish', project, 'checkout', '--selector', 'tier=store', '--wait', '--timeout', '60']);
    expect(r).toMatchObject({ code: 0 });
    expect(r.stdout).toContain('2 of 2 clusters provisioned');
    const status = JSON.parse((await sigil(['-o', 'json', 'status', project, 'checkout'])).stdout);
    expect(status.summary).toMatchObject({ provisioned: 2, converged: true });
  });

  it('publish --wait exits 1 and names the cluster that cannot apply', async () => {
    const bad = agents[1]!.agent.cluster;
    failing.add(bad);
    await sigil(['secrets', 'set', project, 'checkout', 'checkout-db', '--from-literal', 'PASSWORD=v3']);
    const r = await sigil(['publish', project, 'checkout', '--selector', 'tier=store', '--wait', '--timeout', '60']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`failed on 1 cluster(s): ${bad} (Conflict: shop/checkout-db)`);
    expect(r.stdout).toContain('1 of 2 clusters provisioned');
    failing.delete(bad);
    // Fixed: the next value reaches both, and the pipeline goes green again.
    await sigil(['secrets', 'set', project, 'checkout', 'checkout-db', '--from-literal', 'PASSWORD=v4']);
    expect((await sigil(['publish', project, 'checkout', '--selector', 'tier=store', '--wait', '--timeout', '60'])).code).toBe(0);
  });

  it('publish --wait exits 5 on timeout, naming who it still waits for; bad input exits 2', async () => {
    const lonely = `lonely-${project}`.slice(0, 63);
    await sigil(['clusters', 'register', lonely, '--label', 'tier=store']); // never enrolls
    const r = await sigil(['publish', project, 'checkout', '--clusters', lonely, '--wait', '--timeout', '2']);
    expect(r.code).toBe(5);
    expect(r.stderr).toContain(`still waiting for: ${lonely}`);
    expect((await sigil(['publish', project, 'checkout'])).code).toBe(2);
    expect((await sigil(['publish', project, 'no-such-app', '--clusters', lonely])).code).toBe(2);
    expect((await sigil(['publish', project, 'checkout', '--selector', 'a b c'])).code).toBe(2);
  });

  it('unpublish --wait ends with every cluster deprovisioned', async () => {
    const r = await sigil(['unpublish', project, 'checkout', '--wait', '--timeout', '60']);
    expect(r).toMatchObject({ code: 0 });
    expect(r.stdout).toContain('3 deprovisioned'); // the two stores, and the one that never enrolled
  });

  it('has --help on every command, with the exit codes', async () => {
    const top = await sigil(['--help']);
    expect(top.stdout).toContain('5  with --wait: --timeout elapsed');
    for (const cmd of [['publish'], ['unpublish'], ['status'], ['secrets', 'set'], ['clusters', 'token'], ['login']]) {
      const h = await sigil([...cmd, '--help']);
      expect([cmd.join(' '), h.code]).toEqual([cmd.join(' '), 0]);
      expect(h.stdout).toContain('Usage: sigil');
    }
  });
});
