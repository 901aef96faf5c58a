import { describe, expect, it } from '@jest/globals';
import { ConfigError, loadConfig } from './sigil-config.js';

function errorOf(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    const c = loadConfig({});
    expect(c.http).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(c.grpc).toEqual({
      host: '127.0.0.1',
      port: 8443,
      serverNames: ['localhost', '127.0.0.1'],
      admissionPerSecond: 1000,
      maxHandshakes: 256,
    });
    expect(c.agents).toEqual({ audience: 'sigil', certTtlSeconds: 86400 });
    expect(c.dataDir).toMatch(/\/\.data$/);
    expect(c.roles).toEqual(['http', 'grpc', 'worker']);
    expect(c.databaseUrl).toBeUndefined();
    expect(c.redisUrl).toBeUndefined();
    expect(c.hsm.token).toBeUndefined();
    // Besides what the dial policy always refuses (ALWAYS_DENIED_NETWORKS); loopback stays allowed (a proxy sidecar).
    expect(c.connections).toEqual({ deniedNetworks: [], allowedNetworks: [] });
  });

  it('reads the connection network lists, and names a bad entry', () => {
    const c = loadConfig({ SIGIL_CONNECTION_DENIED_NETWORKS: '', SIGIL_CONNECTION_ALLOWED_NETWORKS: ' 10.0.0.0/8, fd00::/8 ,192.0.2.1' });
    expect(c.connections).toEqual({ deniedNetworks: [], allowedNetworks: ['10.0.0.0/8', 'fd00::/8', '192.0.2.1'] });
    const bad = errorOf({ SIGIL_CONNECTION_ALLOWED_NETWORKS: '10.0.0.0/33' });
    expect(bad.variable).toBe('SIGIL_CONNECTION_ALLOWED_NETWORKS');
    expect(bad.message).toContain('"10.0.0.0/33" has a prefix length outside 0-32');
    expect(errorOf({ SIGIL_CONNECTION_DENIED_NETWORKS: 'db.internal' }).message).toContain('not an address or CIDR');
  });

  it.each([
    [{ SIGIL_HTTP_PORT: 'abc' }, 'SIGIL_HTTP_PORT'],
    [{ SIGIL_HTTP_PORT: '70000' }, 'SIGIL_HTTP_PORT'],
    [{ SIGIL_GRPC_PORT: '-1' }, 'SIGIL_GRPC_PORT'],
    [{ SIGIL_LOG_LEVEL: 'loud' }, 'SIGIL_LOG_LEVEL'],
    [{ REDIS_URL: 'http://x' }, 'REDIS_URL'],
    [{ SIGIL_PKCS11_PIN: '1234' }, 'SIGIL_PKCS11_PIN'],
    [{ SIGIL_PKCS11_MODULE: '/x.so', SIGIL_PKCS11_PIN: '1' }, 'SIGIL_PKCS11_TOKEN_LABEL'],
    [{ SIGIL_BOOTSTRAP_ADMIN_TOKEN: 'short' }, 'SIGIL_BOOTSTRAP_ADMIN_TOKEN'],
    [{ SIGIL_SHUTDOWN_TIMEOUT_MS: '0' }, 'SIGIL_SHUTDOWN_TIMEOUT_MS'],
    [{ SIGIL_GRPC_SERVER_NAMES: 'ok.example.com,bad name' }, 'SIGIL_GRPC_SERVER_NAMES'],
    [{ SIGIL_AGENT_CERT_TTL_S: '60' }, 'SIGIL_AGENT_CERT_TTL_S'],
    [{ SIGIL_AGENT_AUDIENCE: 'has space' }, 'SIGIL_AGENT_AUDIENCE'],
  ])('names the bad variable for %j', (env, variable) => {
    const err = errorOf(env);
    expect(err.variable).toBe(variable);
    expect(err.message.startsWith(`invalid configuration: ${variable} `)).toBe(true);
  });

  it('never echoes secret-bearing values', () => {
    const err = errorOf({ DATABASE_URL: 'mysql://u:topsecret@h/db' });
    expect(err.message).not.toContain('topsecret');
    expect(errorOf({ SIGIL_BOOTSTRAP_ADMIN_TOKEN: 'tiny-secret' }).message).not.toContain('tiny-secret');
  });

  it('accepts a real HSM with a PIN file and a subset of roles', () => {
    const c = loadConfig({
      SIGIL_PKCS11_MODULE: '/opt/hsm/lib.so',
      SIGIL_PKCS11_TOKEN_LABEL: 'prod',
      SIGIL_PKCS11_PIN_FILE: '/run/secrets/pin',
      SIGIL_ROLES: 'grpc, worker',
      DATABASE_URL: 'postgres://db/sigil',
    });
    expect(c.hsm.token).toEqual({ module: '/opt/hsm/lib.so', tokenLabel: 'prod', pin: { file: '/run/secrets/pin' } });
    expect(c.roles).toEqual(['grpc', 'worker']);
    expect(c.databaseUrl).toBe('postgres://db/sigil');
  });
});
