import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { repoRoot } from './repo-root.js';
import { freeLoopbackPort, waitFor } from '../../apps/control-plane/src/embedded/local-process.js';
import { testEnv } from './test-env.js';

const MAIN = path.join(repoRoot(), 'dist/apps/control-plane/src/main.js');
export const REPO_ROOT = repoRoot();

/** A control-plane process started from the build, as an operator would run it. */
export class ControlPlaneProcess {
  private out = '';
  private err = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(
    readonly child: ChildProcess,
    readonly url: string,
    /** host:port of the agent gRPC server (TLS; trust GET /api/v1/agents/trust). */
    readonly grpcAddress: string,
  ) {
    child.stdout?.on('data', (c: Buffer) => (this.out += c.toString()));
    child.stderr?.on('data', (c: Buffer) => (this.err += c.toString()));
    this.exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  }

  /** Spawns with exactly `env` (plus PATH and HOME), without waiting for anything. */
  static spawn(env: Record<string, string>, httpPort?: number): ControlPlaneProcess {
    const port = httpPort ?? 0;
    const child = spawn(process.execPath, [MAIN], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', SIGIL_LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new ControlPlaneProcess(child, `http://127.0.0.1:${env.SIGIL_HTTP_PORT ?? port}`, `localhost:${env.SIGIL_GRPC_PORT ?? 8443}`);
  }

  /** Spawns on a free port and waits until /healthz answers. */
  static async start(env: Record<string, string>, timeoutMs = 60_000): Promise<ControlPlaneProcess> {
    const port = await freeLoopbackPort();
    const cp = ControlPlaneProcess.spawn({ SIGIL_HTTP_PORT: String(port), SIGIL_GRPC_PORT: String(await freeLoopbackPort()), ...env });
    await waitFor('control plane', async () => (await fetch(`${cp.url}/healthz`)).ok, {
      timeoutMs,
      child: cp.child,
      describe: () => cp.logs().slice(-2000),
    });
    return cp;
  }

  logs(): string {
    return this.out + this.err;
  }

  get stdout(): string {
    return this.out;
  }

  get stderr(): string {
    return this.err;
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

/** Environment pointing a control plane at the harness' SoftHSM token. */
export function hsmEnv(): Record<string, string> {
  const { module, tokenLabel, pinFile, conf } = testEnv().hsm;
  return { SOFTHSM2_CONF: conf, SIGIL_PKCS11_MODULE: module, SIGIL_PKCS11_TOKEN_LABEL: tokenLabel, SIGIL_PKCS11_PIN_FILE: pinFile };
}
