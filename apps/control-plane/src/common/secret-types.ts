import { X509Certificate, createPrivateKey } from 'node:crypto';

/** Kubernetes Secret types Sigil writes, and what each requires of its keys (as the API server checks). */
export const SECRET_TYPES = [
  'Opaque',
  'kubernetes.io/tls',
  'kubernetes.io/dockerconfigjson',
  'kubernetes.io/basic-auth',
  'kubernetes.io/ssh-auth',
];

/**
 * Problems with `data` for `type`, as (field, problem) pairs. Messages name keys, never values.
 */
export function typeProblems(type: string, data: ReadonlyMap<string, Buffer>): Array<{ field: string; problem: string }> {
  const need = (key: string) => (data.has(key) ? [] : [{ field: `data.${key}`, problem: `is required for type ${type}` }]);
  switch (type) {
    case 'Opaque':
      return [];
    case 'kubernetes.io/dockerconfigjson': {
      const missing = need('.dockerconfigjson');
      if (missing.length) return missing;
      try {
        const parsed = JSON.parse(data.get('.dockerconfigjson')!.toString('utf8')) as unknown;
        if (typeof parsed !== 'object' || parsed === null || typeof (parsed as { auths?: unknown }).auths !== 'object') {
          return [{ field: 'data..dockerconfigjson', problem: 'must be a JSON object with an "auths" object' }];
        }
        return [];
      } catch {
        return [{ field: 'data..dockerconfigjson', problem: 'must be valid JSON' }];
      }
    }
    case 'kubernetes.io/tls': {
      const missing = [...need('tls.crt'), ...need('tls.key')];
      if (missing.length) return missing;
      let cert: X509Certificate;
      try {
        cert = new X509Certificate(data.get('tls.crt')!);
      } catch {
        return [{ field: 'data.tls.crt', problem: 'must be a PEM-encoded X.509 certificate' }];
      }
      try {
        if (!cert.checkPrivateKey(createPrivateKey(data.get('tls.key')!)))
          return [{ field: 'data.tls.key', problem: 'does not match the certificate in tls.crt' }];
      } catch {
        return [{ field: 'data.tls.key', problem: 'must be a PEM-encoded private key' }];
      }
      return [];
    }
    case 'kubernetes.io/basic-auth':
      return data.has('username') || data.has('password')
        ? []
        : [{ field: 'data', problem: 'type kubernetes.io/basic-auth needs username or password' }];
    case 'kubernetes.io/ssh-auth':
      return need('ssh-privatekey');
    default:
      return [{ field: 'type', problem: `must be one of ${SECRET_TYPES.join(', ')}` }];
  }
}
