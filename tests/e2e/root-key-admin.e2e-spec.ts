import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import openapiTS, { astToString } from 'openapi-typescript';
import { REPO_ROOT } from '../harness/control-plane-process.js';
import { eventually } from '../harness/eventually.js';
import { ADMIN_TOKEN, startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import { runSigil } from '../harness/sigil-cli.js';
import { uniqueName } from '../harness/test-env.js';
import { TestAgent, type TestSyncStream } from '../harness/test-agent.js';

// Root-key rotation as an admin operation, on the real stack (PostgreSQL, Redis, SoftHSM):
// through the CLI and REST, refused to non-admins, audited, and with delivery to agents
// (test agents that really open their envelopes) working after rotation and after the old key
// is destroyed in the HSM.

describe('root-key rotation by an admin', () => {
  let cp: RunningControlPlane;
  let env: Record<string, string>;
  let operatorToken: string;
  const project = uniqueName('keys');
  const agents: Array<{ agent: TestAgent; watch: TestSyncStream }> = [];

  const sigil = (...args: string[]) => runSigil(args, env);

  /** Registers and enrolls a cluster whose agent applies every state it is sent. */
  async function cluster(name: string): Promise<TestAgent> {
    expect((await sigil('clusters', 'register', name, '--label', 'tier=store')).code).toBe(0);
    const token = (await sigil('clusters', 'token', name)).stdout.trim();
    const agent = new TestAgent(cp.cp.grpcAddress, (await cp.admin.get('/agents/trust')).body.caCertificatePem as string, name);
    await agent.enroll({ $case: 'bootstrapToken', value: token });
    agents.push({ agent, watch: agent.open({ autoApply: {} }) });
    return agent;
  }

  /** What the agent's Secret holds once written (decrypted with its own delivery key). */
  const valuesOn = (agent: TestAgent, secret: string) => agent.sink.secrets.get(`shop/${secret}`)?.values;

  async function publishAndWait(): Promise<void> {
    const r = await sigil('publish', project, 'checkout', '--selector', 'tier=store', '--wait', '--timeout', '60');
    expect([r.code, r.stderr]).toEqual([0, expect.not.stringContaining('sigil:')]); // stderr: progress only
  }

  const rootKeys = async () =>
    JSON.parse((await sigil('-o', 'json', 'root-keys', 'list')).stdout) as Array<{ version: number; state: string; references: number }>;

  beforeAll(async () => {
    cp = await startControlPlane();
    const dir = await mkdtemp(path.join(tmpdir(), 'sigil-root-keys-'));
    env = { SIGIL_CONFIG: path.join(dir, 'config.json'), HOME: dir, SIGIL_SERVER: cp.cp.url, SIGIL_TOKEN: ADMIN_TOKEN };
    const op = await cp.admin.post('/tokens', { name: uniqueName('operator'), role: 'operator' });
    expect(op.status).toBe(201);
    operatorToken = op.body.token as string;
    // Values sealed and delivered under root key version 1.
    expect((await sigil('projects', 'create', project)).code).toBe(0);
    expect((await sigil('projects', 'namespaces', project, 'shop')).code).toBe(0);
    expect((await sigil('projects', 'allow-clusters', project, '--selector', 'tier=store')).code).toBe(0);
    expect((await sigil('apps', 'create', project, 'checkout', '--namespace', 'shop')).code).toBe(0);
    expect((await sigil('secrets', 'set', project, 'checkout', 'legacy', '--from-literal', 'K=sealed-under-v1')).code).toBe(0);
    expect((await sigil('secrets', 'set', project, 'checkout', 'db', '--from-literal', 'PASSWORD=one')).code).toBe(0);
  }, 120_000);

  afterAll(async () => {
    for (const a of agents) {
      a.watch.cancel();
      a.agent.close();
    }
    await cp?.stop();
  });

  it('a non-admin token gets 403 from every root-key operation, and the CLI exits 4', async () => {
    const op = cp.admin.as(operatorToken);
    for (const r of [await op.get('/root-keys'), await op.post('/root-keys/rotations'), await op.delete('/root-keys/1')]) {
      expect([r.status, r.body.code]).toEqual([403, 'forbidden']);
    }
    const cli = await runSigil(['root-keys', 'rotate'], { ...env, SIGIL_TOKEN: operatorToken });
    expect(cli.code).toBe(4);
    expect(cli.stderr).toContain('(forbidden)');
    expect(await rootKeys()).toEqual([expect.objectContaining({ version: 1, state: 'active' })]);
  });

  it('an admin rotates: version 2 is active and nothing is left under version 1', async () => {
    const a = await cluster(`a-${project}`.slice(0, 63));
    await publishAndWait();
    expect(valuesOn(a, 'legacy')).toEqual({ K: 'sealed-under-v1' });

    const r = await sigil('root-keys', 'rotate', '--wait', '--timeout', '60');
    expect([r.code, r.stderr.includes('sigil:')]).toEqual([0, false]);
    expect(r.stdout).toMatch(/^root key version 2 active \(was 1\); rotation \S+ completed: re-wrapped (\d+) of \1 stored keys/);
    const keys = await rootKeys();
    expect(keys.map(({ version, state, references }) => ({ version, state, references }))).toEqual([
      { version: 1, state: 'retired', references: 0 },
      { version: 2, state: 'active', references: expect.any(Number) },
    ]);
    expect(keys[1]!.references).toBeGreaterThan(0);
    expect((await cp.admin.post('/root-keys/rotations')).status).toBe(201); // and again, while idle
    const third = await eventually('the third version to finish re-wrapping', async () => {
      const k = (await cp.admin.get('/root-keys')).body.items as Array<{ version: number; references: number }>;
      return k.every((x) => x.version === 3 || x.references === 0) ? k : undefined;
    });
    expect(third.map((k) => k.version)).toEqual([1, 2, 3]);
  });

  it('delivery keeps working: new values reach the enrolled agent, old ones a newly enrolled one', async () => {
    const [a] = agents.map((x) => x.agent);
    expect((await sigil('secrets', 'set', project, 'checkout', 'db', '--from-literal', 'PASSWORD=two')).code).toBe(0);
    const b = await cluster(`b-${project}`.slice(0, 63));
    await publishAndWait();
    expect(valuesOn(a!, 'db')).toEqual({ PASSWORD: 'two' }); // sealed under the new root key, wrapped for a's re-wrapped delivery key
    expect(valuesOn(b, 'legacy')).toEqual({ K: 'sealed-under-v1' }); // a data key re-wrapped by the rotation, wrapped for b
    expect(valuesOn(b, 'db')).toEqual({ PASSWORD: 'two' });
  });

  it('destroys retired keys in the HSM, refuses the active one, and delivery still works', async () => {
    const active = await sigil('root-keys', 'destroy', '3');
    expect(active.code).toBe(2);
    expect(active.stderr).toContain('(root_key_not_retired)');
    expect((await sigil('root-keys', 'destroy', '99')).stderr).toContain('(root_key_not_found)');
    for (const v of ['1', '2'])
      expect(await sigil('root-keys', 'destroy', v)).toMatchObject({ code: 0, stdout: `root key version ${v} destroyed in the HSM\n` });
    const keys = (await cp.admin.get('/root-keys')).body.items as Array<{ version: number; state: string; hsm?: unknown }>;
    expect(keys.map((k) => [k.version, k.state, k.hsm === undefined])).toEqual([
      [1, 'destroyed', true],
      [2, 'destroyed', true],
      [3, 'active', false],
    ]);
    const c = await cluster(`c-${project}`.slice(0, 63));
    expect((await sigil('secrets', 'set', project, 'checkout', 'db', '--from-literal', 'PASSWORD=three')).code).toBe(0);
    await publishAndWait();
    for (const agent of [...agents.map((x) => x.agent)]) expect(valuesOn(agent, 'db')).toEqual({ PASSWORD: 'three' });
    expect(valuesOn(c, 'legacy')).toEqual({ K: 'sealed-under-v1' });
  });

  it('every rotation and destruction is in the audit log, the refused ones as denied', async () => {
    const events = async (action: string) =>
      (
        (await cp.admin.get(`/audit?action=${action}&limit=100`)).body.items as Array<{
          outcome: string;
          actor: string | null;
          target: string | null;
        }>
      )
        .filter((e) => e.outcome !== 'attempted')
        .map((e) => [e.outcome, e.target]);
    // Sorted: the order of equal-time records is not the point.
    expect((await events('root-key.rotate')).sort()).toEqual([
      ['denied', null], // the operator, over REST
      ['denied', null], // the operator, with the CLI
      ['success', null],
      ['success', null],
    ]);
    expect((await events('root-key.destroy')).sort()).toEqual([
      ['denied', 'version=1'],
      ['failed', 'version=3'], // active
      ['failed', 'version=99'], // no such version
      ['success', 'version=1'],
      ['success', 'version=2'],
    ]);
  });

  it('serves the OpenAPI document the CLI’s committed types were generated from', async () => {
    // .ci/check-generated.sh builds the document in Nest's preview mode; this is the live one.
    const served = await (await fetch(`${cp.cp.url}/api/docs-json`)).json();
    const types = astToString(await openapiTS(served as Parameters<typeof openapiTS>[0], { alphabetize: true, defaultNonNullable: false }));
    const committed = await readFile(path.join(REPO_ROOT, 'libs/rest-api/src/gen/openapi.ts'), 'utf8');
    expect(committed.slice(committed.indexOf('\n') + 1)).toBe(types);
  });
});
