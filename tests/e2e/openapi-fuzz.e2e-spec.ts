import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { ADMIN_TOKEN, startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';

/**
 * Schema-driven fuzzing of every operation in the OpenAPI document (schemathesis, installed
 * by .ci/python-tools.sh), with path parameters naming seeded resources so requests reach
 * past the 404s. Any 5xx fails. Seeded, so a CI failure reproduces with the same seed.
 */
const ST = path.join(process.env.SIGIL_CACHE ?? path.join(homedir(), '.cache/sigil'), 'venv-schemathesis/bin/st');
const SEED = 20261201;

let s: RunningControlPlane;
let tokenId: string;

function schemathesis(args: string[], dir: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(ST, args, { cwd: dir, env: { ...process.env, NO_COLOR: '1', PYTHONUNBUFFERED: '1' } });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.on('close', (code) => resolve({ code, output }));
  });
}

/** The test cases the JUnit report lists as failed, with their messages. */
function failures(reportDir: string): string[] {
  return readdirSync(reportDir)
    .filter((f) => f.endsWith('.xml'))
    .flatMap((f) => {
      const xml = readFileSync(path.join(reportDir, f), 'utf8');
      return [...xml.matchAll(/<testcase[^>]*name="([^"]*)"[^>]*>([\s\S]*?)<\/testcase>/g)]
        .filter(([, , body]) => /<(failure|error)\b/.test(body!))
        .map(([, name, body]) => `${name}\n${body!.slice(0, 3000)}`);
    });
}

beforeAll(async () => {
  expect(existsSync(ST)).toBe(true); // run `make deps` (.ci/python-tools.sh)
  // The rate limiter would answer most fuzz requests 429 and hide what is behind it.
  s = await startControlPlane({ SIGIL_RATE_LIMIT_RPS: '100000', SIGIL_RATE_LIMIT_BURST: '100000' });
  const ok = (r: { status: number; text: string }, status: number) =>
    expect(`${r.status} ${r.text}`).toMatch(new RegExp(`^${Math.floor(status / 100)}\\d\\d `));
  ok(await s.admin.post('/projects', { name: 'fuzz', description: 'fuzzed' }), 201);
  ok(await s.admin.put('/projects/fuzz/namespaces', { namespaces: ['fuzz-ns'] }), 200);
  ok(await s.admin.post('/projects/fuzz/apps', { name: 'fuzz-app', namespace: 'fuzz-ns', deliveryMode: 'env' }), 201);
  ok(await s.admin.post('/projects/fuzz/apps/fuzz-app/secrets', { name: 'fuzz-secret', data: { A: 'one', B: 'two' } }), 201);
  ok(await s.admin.put('/projects/fuzz/apps/fuzz-app/secrets/fuzz-secret', { data: { A: 'three' } }), 200);
  ok(await s.admin.post('/projects/fuzz/apps/fuzz-app/secrets', { name: 'fuzz-secret-2', data: { C: 'x' } }), 201);
  ok(await s.admin.post('/clusters', { name: 'fuzz-cluster', labels: { tier: 'store' } }), 201);
  ok(await s.admin.post('/clusters/fuzz-cluster/enrollment-tokens', { ttlSeconds: 600 }), 201);
  ok(await s.admin.put('/projects/fuzz/cluster-selector', { selector: {} }), 200);
  ok(await s.admin.post('/projects/fuzz/apps/fuzz-app/publish', { clusters: ['fuzz-cluster'] }), 200);
  const token = await s.admin.post('/tokens', { name: 'fuzz-pipeline', role: 'pipeline', project: 'fuzz' });
  ok(token, 201);
  tokenId = token.body.id as string;
}, 120_000);

afterAll(async () => {
  await s?.stop();
});

describe('OpenAPI fuzzing (schemathesis)', () => {
  it('no operation answers 5xx to schema-generated input, null and hostile values included', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sigil-fuzz-'));
    writeFileSync(
      path.join(dir, 'schemathesis.toml'),
      [
        '[parameters]',
        '"path.project" = "fuzz"',
        '"path.app" = "fuzz-app"',
        '"path.secret" = "fuzz-secret"',
        '"path.cluster" = "fuzz-cluster"',
        `"path.id" = "${tokenId}"`,
        '',
      ].join('\n'),
    );
    const common = [
      '--config-file',
      path.join(dir, 'schemathesis.toml'),
      'run',
      `${s.cp.url}/api/docs-json`,
      '-H',
      `Authorization: Bearer ${ADMIN_TOKEN}`,
      '--checks',
      'not_a_server_error',
      '--mode',
      'all',
      '--phases',
      'examples,coverage,fuzzing',
      '--max-examples',
      '60',
      '--seed',
      String(SEED),
      '--workers',
      '2',
      '--report',
      'junit',
      '--report-dir',
      path.join(dir, 'report'),
      // An event stream never ends by itself (its refusals are tested in fleet-deliveries).
      '--exclude-path-regex',
      'deliveries/events$',
    ];
    // Everything but DELETE first, so the seeded resources survive it; then the DELETEs.
    const runs = [
      await schemathesis([...common, '--exclude-method', 'DELETE'], dir),
      await schemathesis([...common, '--include-method', 'DELETE'], dir),
    ];
    const failed = failures(path.join(dir, 'report'));
    const outputs = runs.map((r) => r.output.slice(-6000)).join('\n-----\n');
    if (failed.length > 0 || runs.some((r) => r.code !== 0)) console.log(`${failed.join('\n\n')}\n${outputs}`); // eslint-disable-line no-console
    expect(failed).toEqual([]);
    expect(runs.map((r) => r.code)).toEqual([0, 0]);
    // It really ran every operation.
    for (const r of runs) expect(r.output).toMatch(/Tested: \d+/);
    expect(s.cp.logs()).not.toMatch(/"msg":"request failed"/);
  }, 600_000);
});
