import { chmod, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { isAlive } from '../../apps/control-plane/src/embedded/local-process.js';
import { ControlPlaneProcess } from '../harness/control-plane-process.js';

// `make up` semantics: nothing configured but a data dir → embedded PostgreSQL, a local
// redis-server and a SoftHSM token are started/created under it, kept across restarts,
// and stopped with the control plane.

async function pidOf(file: string): Promise<number> {
  return Number.parseInt((await readFile(file, 'utf8')).split('\n')[0]!, 10);
}

async function ready(cp: ControlPlaneProcess): Promise<number> {
  return (await fetch(`${cp.url}/readyz`)).status;
}

describe('control plane on embedded defaults', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'sigil-up-'));
    await chmod(dir, 0o711);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const env = () => ({ SIGIL_DATA_DIR: path.join(dir, 'data') });

  let firstToken: string;

  it('starts PostgreSQL, Redis and a SoftHSM token under the data dir and becomes ready', async () => {
    const cp = await ControlPlaneProcess.start(env(), 90_000);
    try {
      expect(await ready(cp)).toBe(200);
      const data = path.join(dir, 'data');
      const tokenFile = path.join(data, 'admin-token');
      expect((await stat(tokenFile)).mode & 0o777).toBe(0o600);
      firstToken = (await readFile(tokenFile, 'utf8')).trim();
      expect(firstToken).toMatch(/^sgl_[A-Za-z0-9_-]{43}$/);
      expect(cp.logs()).not.toContain(firstToken);
      // Dev token contract: label "sigil", config and PIN where tools expect them.
      expect((await stat(path.join(data, 'softhsm', 'pin'))).mode & 0o777).toBe(0o600);
      expect(await readFile(path.join(data, 'softhsm', 'softhsm2.conf'), 'utf8')).toContain(path.join(data, 'softhsm', 'tokens'));
      const body = (await (await fetch(`${cp.url}/readyz`)).json()) as { checks: { hsm: { detail: { tokenLabel: string } } } };
      expect(body.checks.hsm.detail.tokenLabel).toBe('sigil');
    } finally {
      const { code } = await cp.stop('SIGTERM');
      expect(code).toBe(0);
    }
  });

  it('stops everything it started on SIGTERM (no orphans)', async () => {
    const cp = await ControlPlaneProcess.start({ ...env(), SIGIL_BOOTSTRAP_ADMIN_TOKEN: `sgl_${'e'.repeat(40)}` }, 60_000);
    const redisPid = await pidOf(path.join(dir, 'data', 'redis', 'redis.pid'));
    const pgPid = await pidOf(path.join(dir, 'data', 'postgres', 'pgdata', 'postmaster.pid'));
    expect(isAlive(redisPid) && isAlive(pgPid)).toBe(true);
    // The services do not inherit the control plane's environment (which may hold secrets).
    for (const pid of [redisPid, pgPid]) {
      const environ = await readFile(`/proc/${pid}/environ`, 'utf8');
      expect(environ).not.toContain('SIGIL_BOOTSTRAP_ADMIN_TOKEN');
      expect(environ).not.toContain('sgl_');
    }
    await cp.stop('SIGTERM');
    expect(isAlive(redisPid)).toBe(false);
    expect(isAlive(pgPid)).toBe(false);
  });

  it('keeps its data across restarts and does not mint a second admin token', async () => {
    const started = Date.now();
    const cp = await ControlPlaneProcess.start(env(), 30_000);
    try {
      expect(await ready(cp)).toBe(200);
      expect(Date.now() - started).toBeLessThan(30_000);
      expect((await readFile(path.join(dir, 'data', 'admin-token'), 'utf8')).trim()).toBe(firstToken);
    } finally {
      await cp.stop();
    }
  });

  it('recovers after being killed with SIGKILL: leftover services are stopped and restarted', async () => {
    const killed = await ControlPlaneProcess.start(env(), 60_000);
    const redisPid = await pidOf(path.join(dir, 'data', 'redis', 'redis.pid'));
    await killed.stop('SIGKILL');
    const cp = await ControlPlaneProcess.start(env(), 60_000);
    try {
      expect(await ready(cp)).toBe(200);
      expect(isAlive(redisPid)).toBe(false);
    } finally {
      await cp.stop();
    }
  });
});
