import { spawnSync } from 'node:child_process';
import { describe, expect, it } from '@jest/globals';
import { AGENT_MAIN } from '../harness/agent-process.js';
import { REPO_ROOT } from '../harness/control-plane-process.js';

const node = process.execPath;

describe('apps/agent', () => {
  it('refuses to start without its mandatory settings, naming them', () => {
    const r = spawnSync(node, [AGENT_MAIN], { cwd: REPO_ROOT, encoding: 'utf8', env: { PATH: process.env.PATH } });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("required option '--control-plane <host:port>' not specified");
  });

  it('refuses two enrollment credentials at once', () => {
    const r = spawnSync(
      node,
      [
        AGENT_MAIN,
        '--control-plane',
        'x:1',
        '--ca-file',
        '/dev/null',
        '--cluster',
        'c1',
        '--enrollment-token-file',
        'a',
        '--service-account-token-file',
        'b',
        '--state-dir',
        '/tmp/x',
      ],
      { cwd: REPO_ROOT, encoding: 'utf8', env: { PATH: process.env.PATH } },
    );
    expect(r.status).toBe(78);
    expect(r.stderr).toContain('not both');
  });

  it('rejects a bad flag with a message and a non-zero exit', () => {
    const r = spawnSync(node, [AGENT_MAIN, '--metrics-port', 'abc'], { cwd: REPO_ROOT, encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("--metrics-port <port>' argument 'abc' is invalid");
  });
});

describe('apps/cli', () => {
  it('prints help for every command', () => {
    const r = spawnSync(node, ['dist/apps/cli/src/main.js', '--help'], { cwd: REPO_ROOT, encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('Usage: sigil');
    expect(r.stdout).toContain('health');
  });

  it('exits 3 when the control plane cannot be reached', () => {
    const r = spawnSync(node, ['dist/apps/cli/src/main.js', 'health', '--server', 'http://127.0.0.1:9'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
    });
    expect(r.status).toBe(3);
    expect(r.stderr).toContain('cannot reach http://127.0.0.1:9');
  });
});
