import { describe, expect, it } from '@jest/globals';
import { ControlPlaneProcess } from '../harness/control-plane-process.js';

// Misconfiguration must fail fast: one line naming the variable, exit code 78 (EX_CONFIG),
// before anything is started or written.
async function runWith(env: Record<string, string>) {
  const started = Date.now();
  const cp = ControlPlaneProcess.spawn({ SIGIL_DATA_DIR: '/nonexistent/never-created', ...env });
  const { code } = await cp.exited;
  return { code, stderr: cp.stderr.trim(), ms: Date.now() - started };
}

describe('control-plane configuration', () => {
  it('rejects SIGIL_HTTP_PORT=abc naming the variable, with a non-zero exit', async () => {
    const { code, stderr, ms } = await runWith({ SIGIL_HTTP_PORT: 'abc' });
    expect(code).toBe(78);
    expect(stderr).toBe(
      'sigil-control-plane: invalid configuration: SIGIL_HTTP_PORT must be an integer port between 1 and 65535 (got "abc")',
    );
    expect(ms).toBeLessThan(5_000);
  });

  it('names a bad DATABASE_URL without echoing it (it may hold a password)', async () => {
    const { code, stderr } = await runWith({ DATABASE_URL: 'mysql://root:hunter2@db/sigil' });
    expect(code).toBe(78);
    expect(stderr).toContain('DATABASE_URL must be a URL starting with postgres:// or postgresql://');
    expect(stderr).not.toContain('hunter2');
  });

  it('requires a PIN once a real HSM module is configured', async () => {
    const { code, stderr } = await runWith({ SIGIL_PKCS11_MODULE: '/usr/lib/vendor/libhsm.so', SIGIL_PKCS11_TOKEN_LABEL: 'prod' });
    expect(code).toBe(78);
    expect(stderr).toContain('SIGIL_PKCS11_PIN exactly one of SIGIL_PKCS11_PIN or SIGIL_PKCS11_PIN_FILE is required');
  });

  it('rejects an unknown role', async () => {
    const { code, stderr } = await runWith({ SIGIL_ROLES: 'http,mining' });
    expect(code).toBe(78);
    expect(stderr).toContain('SIGIL_ROLES must be "all" or a comma-separated list of http, grpc, worker (got "http,mining")');
  });
});
