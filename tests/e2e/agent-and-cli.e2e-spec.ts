import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from '@jest/globals';
import { freeLoopbackPort, waitFor } from '../../apps/control-plane/src/embedded/local-process.js';
import { REPO_ROOT } from '../harness/control-plane-process.js';

const node = process.execPath;

describe('apps/agent', () => {
  it('starts, serves /healthz and /metrics, and stops cleanly on SIGTERM', async () => {
    const port = await freeLoopbackPort();
    const agent = spawn(node, ['dist/apps/agent/src/main.js', '--metrics-host', '127.0.0.1', '--state-dir', '/tmp'], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH, SIGIL_AGENT_METRICS_PORT: String(port) },
      stdio: 'ignore',
    });
    try {
      await waitFor('agent', async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, { timeoutMs: 15_000, child: agent });
      expect(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()).toContain('process_cpu_seconds_total');
    } finally {
      agent.kill('SIGTERM');
      const [code] = (await once(agent, 'exit')) as [number | null];
      expect(code).toBe(0);
    }
  });

  it('rejects a bad flag with a message and a non-zero exit', () => {
    const r = spawnSync(node, ['dist/apps/agent/src/main.js', '--metrics-port', 'abc'], { cwd: REPO_ROOT, encoding: 'utf8' });
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
