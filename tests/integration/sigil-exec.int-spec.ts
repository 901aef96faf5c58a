import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from '@jest/globals';
import { repoRoot } from '../harness/repo-root.js';

// sigil-exec (apps/agent/exec-wrapper), the release build that `make build` and the tests' global
// setup put in dist/ and the agent image ships: the environment of injected pods comes through it,
// so it must become the app (same PID, signals straight to it), hand over every value byte for
// byte, fail with the exit status a shell would, and never print a value.

const SOURCE = path.join(repoRoot(), 'apps/agent/exec-wrapper');
const BIN = path.join(repoRoot(), 'dist/apps/agent/sigil-exec');
const CANARY = 'exec-canary-7d1f';
const NODE = process.execPath;

let dir: string;
let n = 0;

/** An env file of `entries` (NUL-separated, as the init container writes it); returns its path. */
function envFile(entries: string[] | string): string {
  const file = path.join(dir, `env-${n++}`);
  writeFileSync(file, typeof entries === 'string' ? entries : entries.map((e) => `${e}\0`).join(''), { mode: 0o400 });
  return file;
}

function run(args: string[], env: NodeJS.ProcessEnv) {
  const r = spawnSync(BIN, args, { env, encoding: 'utf8' });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

const baseEnv = (file?: string): NodeJS.ProcessEnv => ({
  PATH: `${path.dirname(NODE)}:/usr/bin:/bin`,
  ...(file === undefined ? {} : { SIGIL_EXEC_ENV_FILE: file }),
});

/** A program that reports what it became: its PID, argv and environment. */
const REPORT =
  'process.stdout.write(JSON.stringify({ pid: process.pid, argv0: process.argv0, args: process.argv.slice(1), env: process.env }))';

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'sigil-exec-'));
  // Built by .ci/build.mjs (the global setup runs it), which skips it where there is no Go.
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: .ci/build.mjs builds it with Go (is go in PATH?)`);
});

describe('sigil-exec', () => {
  it('passes its Go unit tests', () => {
    const out = execFileSync('go', ['test', '-count=1', './...'], { cwd: SOURCE, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(out).toMatch(/^ok\s+sigil\.dev\/agent\/exec-wrapper/m);
  });

  it('is a static executable (no ELF interpreter, no dynamic section): it runs in any app image', () => {
    const elf = readFileSync(BIN);
    expect(elf.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
    expect(elf[4]).toBe(2); // 64-bit
    const phoff = Number(elf.readBigUInt64LE(0x20));
    const phentsize = elf.readUInt16LE(0x36);
    const phnum = elf.readUInt16LE(0x38);
    const types = Array.from({ length: phnum }, (_, i) => elf.readUInt32LE(phoff + i * phentsize));
    expect(types).toContain(1); // PT_LOAD: the headers were read right
    expect(types).not.toContain(3); // PT_INTERP
    expect(types).not.toContain(2); // PT_DYNAMIC
  });

  it('becomes the command found in PATH, with the file merged over the environment and argv untouched', async () => {
    const file = envFile([`MULTI=${CANARY}\nsecond line\n`, 'EQUALS=a=b==', 'OVERRIDDEN=from-file', 'EMPTY=', 'LAST=1', 'LAST=2']);
    const args = ['a b', '', 'new\nline', '--copy-to', '--', '$HOME', 'ünïcode'];
    const child = spawn(BIN, ['node', '-e', REPORT, ...args], {
      env: { ...baseEnv(file), KEPT: 'inherited', OVERRIDDEN: 'inherited' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect({ status, stderr }).toEqual({ status: 0, stderr: '' });
    const seen = JSON.parse(stdout) as { pid: number; argv0: string; args: string[]; env: Record<string, string> };
    expect(seen.pid).toBe(child.pid); // exec, not a child process
    expect(seen.argv0).toBe('node');
    expect(seen.args).toEqual(args);
    expect(seen.env).toMatchObject({
      MULTI: `${CANARY}\nsecond line\n`,
      EQUALS: 'a=b==',
      OVERRIDDEN: 'from-file',
      EMPTY: '',
      LAST: '2',
      KEPT: 'inherited',
    });
    expect(seen.env).not.toHaveProperty('SIGIL_EXEC_ENV_FILE');
  });

  it('looks the command up in the PATH of the merged environment, skipping a non-executable match, like env(1)', () => {
    const first = path.join(dir, 'path-first');
    const second = path.join(dir, 'path-second');
    mkdirSync(first);
    mkdirSync(second);
    writeFileSync(path.join(first, 'sigil-hello'), '#!/bin/sh\necho wrong\n', { mode: 0o644 });
    writeFileSync(path.join(second, 'sigil-hello'), '#!/bin/sh\necho "hello $0 $1 $GREETING"\n', { mode: 0o755 });
    const file = envFile([`PATH=${first}:${second}:/usr/bin:/bin`, 'GREETING=from-file']);
    const r = run(['sigil-hello', 'arg'], baseEnv(file));
    expect(r).toMatchObject({ status: 0, stderr: '' });
    // A script's $0 is the path the kernel ran: the second directory's.
    expect(r.stdout).toBe(`hello ${second}/sigil-hello arg from-file\n`);
    // `--` ends sigil-exec's own options.
    expect(run(['--', 'sigil-hello'], baseEnv(file)).stdout).toBe(`hello ${second}/sigil-hello  from-file\n`);
  });

  it('leaves signals and the exit status to the app: SIGTERM reaches its handler', async () => {
    const script =
      'process.on("SIGTERM", () => { process.stdout.write("term"); process.exit(7); }); process.stdout.write("ready"); setInterval(() => {}, 1000);';
    const child = spawn(BIN, ['node', '-e', script], { env: baseEnv(envFile([])), stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    const ready = new Promise<void>((resolve) =>
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (stdout.includes('ready')) resolve();
      }),
    );
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    await ready;
    child.kill('SIGTERM');
    expect(await closed).toBe(7);
    expect(stdout).toBe('readyterm');
  });

  it('fails with 127 / 126 / 1 and a sigil-exec: message that never holds a value', () => {
    const notExecutable = path.join(dir, 'not-executable');
    writeFileSync(notExecutable, '#!/bin/sh\n', { mode: 0o644 });
    const good = envFile([`SECRET=${CANARY}`]);
    const cases: Array<[string, string[], NodeJS.ProcessEnv, number, RegExp]> = [
      ['no command', [], baseEnv(good), 1, /no command/],
      ['only --', ['--'], baseEnv(good), 1, /no command/],
      ['no env file', ['true'], baseEnv(path.join(dir, 'missing')), 1, /env file: .*missing: no such file/],
      ['the default env file, absent here', ['true'], baseEnv(), 1, /\/sigil\/env\/env: no such file/],
      ['an unreadable env file (a directory)', ['true'], baseEnv(dir), 1, /env file: .*is a directory/],
      ['an entry without =', ['true'], baseEnv(envFile(['OK=1', CANARY])), 1, /entry 2 has no '='/],
      ['a bad name', ['true'], baseEnv(envFile([`BAD-NAME=${CANARY}`])), 1, /entry 1: the name/],
      ['a name with a newline', ['true'], baseEnv(envFile(`A\nB=${CANARY}\0`)), 1, /entry 1: the name/],
      ['a command not in PATH', ['sigil-no-such-command'], baseEnv(good), 127, /sigil-no-such-command: command not found/],
      ['a path that does not exist', [path.join(dir, 'nope')], baseEnv(good), 127, /command not found/],
      ['a file without x permission', [notExecutable], baseEnv(good), 126, /cannot execute: permission denied/],
      ['a directory', [dir], baseEnv(good), 126, /cannot execute/],
      ['--copy-to without a directory', ['--copy-to'], baseEnv(good), 1, /usage: sigil-exec --copy-to <dir>/],
    ];
    for (const [what, args, env, status, message] of cases) {
      const r = run(args, env);
      expect([what, r.status, r.stdout]).toEqual([what, status, '']);
      expect([what, r.stderr]).toEqual([what, expect.stringMatching(/^sigil-exec: [^\n]*\n$/)]);
      expect([what, r.stderr]).toEqual([what, expect.stringMatching(message)]);
      expect(r.stderr).not.toContain(CANARY);
    }
    expect(run(['--help'], {})).toMatchObject({
      status: 0,
      stdout: expect.stringMatching(/^usage: sigil-exec \[--\] <command>/),
      stderr: '',
    });
    // Once it has become the command, the status is the command's own.
    expect(run(['sh', '-c', 'exit 42'], baseEnv(good))).toMatchObject({ status: 42, stderr: '' });
  });

  it('--copy-to places a working copy of itself (mode 0555) in a directory, over an earlier one', () => {
    const shared = path.join(dir, 'shared-bin');
    mkdirSync(shared);
    for (let i = 0; i < 2; i++) expect(run(['--copy-to', shared], {})).toEqual({ status: 0, signal: null, stdout: '', stderr: '' });
    const copy = path.join(shared, 'sigil-exec');
    expect(statSync(copy).mode & 0o7777).toBe(0o555);
    expect(readFileSync(copy).equals(readFileSync(BIN))).toBe(true);
    const r = spawnSync(copy, ['sh', '-c', 'printf %s "$SECRET"'], { env: baseEnv(envFile([`SECRET=${CANARY}`])), encoding: 'utf8' });
    expect(r.stdout).toBe(CANARY);
    expect(run(['--copy-to', path.join(dir, 'no-such-dir')], {})).toMatchObject({
      status: 1,
      stderr: expect.stringMatching(/^sigil-exec: copy to /),
    });
  });
});
