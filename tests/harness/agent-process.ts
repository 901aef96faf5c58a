import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './repo-root.js';
import { freeLoopbackPort, waitFor } from '../../apps/control-plane/src/embedded/local-process.js';
import type { AgentConfig } from '../../apps/agent/src/agent-config.js';
import { AGENT_ENTRY, AGENT_NODE_FLAGS } from '../../apps/agent/src/runtime-flags.js';
import { REPO_ROOT } from './control-plane-process.js';
import { testEnv } from './test-env.js';

/** The bundled agent, as the image ships it. */
export const AGENT_MAIN = path.join(repoRoot(), AGENT_ENTRY);

/**
 * The agent's settings a test chooses, named as the agent's own config names them (so a renamed
 * flag fails to compile here); the metrics address is the harness' to pick.
 */
export type AgentFlags = Partial<Omit<AgentConfig, 'metricsHost' | 'metricsPort'>> &
  Pick<AgentConfig, 'controlPlane' | 'caFile' | 'cluster'>;

/**
 * The agent's command line for `flags`: `--kebab-case value`, a list comma-joined, `true` as a
 * bare switch. Without `kubeconfig`, the harness' kube-apiserver.
 */
export function agentArgs(flags: AgentFlags): string[] {
  const withDefaults: Record<string, string | number | boolean | string[] | Record<string, unknown> | undefined> = {
    kubeconfig: testEnv().kube.kubeconfig,
    ...flags,
  };
  return Object.entries(withDefaults).flatMap(([name, value]) => {
    const flag = `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    if (value === undefined || value === false) return [];
    if (value === true) return [flag];
    return [flag, Array.isArray(value) ? value.join(',') : typeof value === 'object' ? JSON.stringify(value) : String(value)];
  });
}

/** The edge agent as a process, from the build, as a cluster would run it. */
export class AgentProcess {
  private out = '';
  readonly exited: Promise<number | null>;

  private constructor(
    readonly child: ChildProcess,
    readonly metricsUrl: string,
  ) {
    child.stdout?.on('data', (c: Buffer) => (this.out += c.toString()));
    child.stderr?.on('data', (c: Buffer) => (this.out += c.toString()));
    this.exited = once(child, 'exit').then(([code]) => code as number | null);
  }

  static async start(flags: AgentFlags, env: Record<string, string> = {}): Promise<AgentProcess> {
    const port = await freeLoopbackPort();
    const child = spawn(
      process.execPath,
      [...AGENT_NODE_FLAGS, AGENT_MAIN, '--metrics-host', '127.0.0.1', '--metrics-port', String(port), ...agentArgs(flags)],
      {
        cwd: REPO_ROOT,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', SIGIL_LOG_LEVEL: 'info', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const agent = new AgentProcess(child, `http://127.0.0.1:${port}`);
    await waitFor('agent /healthz', async () => (await fetch(`${agent.metricsUrl}/healthz`)).ok, {
      timeoutMs: 20_000,
      child,
      describe: () => agent.logs().slice(-2000),
    });
    return agent;
  }

  logs(): string {
    return this.out;
  }

  /** Resident memory in MiB, from /proc. */
  rssMiB(): number {
    const status = readFileSync(`/proc/${this.child.pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
  }

  /** CPU time (user + system) in clock ticks, from /proc. */
  cpuTicks(): number {
    const fields = readFileSync(`/proc/${this.child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return Number(fields[11]) + Number(fields[12]);
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}
