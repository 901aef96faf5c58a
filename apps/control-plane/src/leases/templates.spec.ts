import { describe, expect, it } from '@jest/globals';
import { backoffSeconds, roleName, safeError } from './lease-work.js';
import { CredentialEngineError } from '../connections/engines/credential-engine.js';
import { renderKeys } from './templates.js';

const facts = (database = 'orders') => ({
  username: 'sigil_ab_1234',
  password: Buffer.from('Pa55word'),
  host: 'db.internal',
  port: 5432,
  database,
  tlsMode: 'verify-full' as const,
});

describe('key templates', () => {
  it('renders each key; a URL template percent-encodes the database name', () => {
    const out = renderKeys(
      {
        user: '{{username}}',
        pw: '{{ password }}',
        url: 'postgresql://{{username}}:{{password}}@{{host}}:{{port}}/{{database}}?sslmode={{sslmode}}',
      },
      facts('a/b@c'),
    );
    expect(out.get('user')!.toString()).toBe('sigil_ab_1234');
    expect(out.get('pw')!.toString()).toBe('Pa55word');
    expect(out.get('url')!.toString()).toBe('postgresql://sigil_ab_1234:Pa55word@db.internal:5432/a%2Fb%40c?sslmode=verify-full');
  });

  it('brackets an IPv6 host in a URL', () => {
    const out = renderKeys({ url: 'postgresql://{{host}}:{{port}}/x' }, { ...facts(), host: '::1' });
    expect(out.get('url')!.toString()).toBe('postgresql://[::1]:5432/x');
  });
});

describe('lease work helpers', () => {
  it('names roles by the prefix and the lease id, within 63 bytes', () => {
    expect(roleName('sigil_1a2b3c4d_', '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0')).toBe('sigil_1a2b3c4d_0f1e2d3c4b5a69788796');
    expect(() => roleName('x'.repeat(50), '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0')).toThrow('too long');
  });

  it('backs off from one sweep interval, doubling, capped', () => {
    expect([1, 2, 3, 4].map((a) => backoffSeconds(a, 5_000))).toEqual([5, 10, 20, 40]);
    expect(backoffSeconds(30, 5_000)).toBe(300);
    expect(backoffSeconds(30, 200)).toBe(12);
  });

  it('records engine errors by code and message, anything else by class and origin only', () => {
    expect(safeError(new CredentialEngineError('unreachable', 'connect ECONNREFUSED 127.0.0.1:1'))).toBe(
      'unreachable: connect ECONNREFUSED 127.0.0.1:1',
    );
    // Where it came from, so it can be traced, but never its message (a driver's can quote a statement).
    const internal = safeError(new Error('password=hunter2'));
    expect(internal).toMatch(/^internal: Error at apps\/control-plane\/src\/leases\/templates\.spec\.ts:\d+$/);
    expect(internal).not.toContain('hunter2');
  });
});
