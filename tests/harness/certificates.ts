import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * Certificates from openssl, P-256 and valid for a day: a CA of the test's own (not Sigil's
 * cluster CA), TLS servers of tests, impostors' client certificates, the bench's gRPC floors.
 * openssl rather than Sigil's own x509 code, so a test does not trust what it is testing.
 */
export interface Pem {
  cert: string;
  key: string;
}

/** `extensions` are openssl `-addext` values, e.g. `subjectAltName=IP:127.0.0.1` or `extendedKeyUsage=clientAuth`. */
export function selfSigned(cn: string, extensions: string[] = []): Pem {
  return inTempDir((openssl) => {
    openssl('req', '-x509', ...NEW_KEY, '-subj', `/CN=${cn}`, ...extensions.flatMap((e) => ['-addext', e]), ...OUT);
  });
}

/**
 * A certificate for `cn` issued by `ca` (one from `selfSigned`), with `extensions` as in
 * `selfSigned`; `organisation` becomes the subject's O (Kubernetes reads it as the group).
 */
export function signedBy(ca: Pem, cn: string, extensions: string[] = [], organisation?: string): Pem {
  return inTempDir((openssl, dir) => {
    writeFileSync(path.join(dir, 'ca.crt'), ca.cert);
    writeFileSync(path.join(dir, 'ca.key'), ca.key, { mode: 0o600 });
    writeFileSync(path.join(dir, 'ext'), `${extensions.join('\n')}\n`);
    openssl('req', ...NEW_KEY, '-subj', `${organisation ? `/O=${organisation}` : ''}/CN=${cn}`, '-keyout', 'key', '-out', 'csr');
    openssl(
      'x509',
      '-req',
      '-in',
      'csr',
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '1',
      '-extfile',
      'ext',
      '-out',
      'crt',
    );
  });
}

const NEW_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
const OUT = ['-days', '1', '-keyout', 'key', '-out', 'crt'];

/** Runs openssl in a fresh directory and returns the `crt` and `key` it left there. */
function inTempDir(run: (openssl: (...args: string[]) => void, dir: string) => void): Pem {
  const dir = mkdtempSync(path.join(tmpdir(), 'sigil-cert-'));
  try {
    run((...args) => execFileSync('openssl', args, { stdio: 'ignore', cwd: dir }), dir);
    return { cert: readFileSync(path.join(dir, 'crt'), 'utf8'), key: readFileSync(path.join(dir, 'key'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
