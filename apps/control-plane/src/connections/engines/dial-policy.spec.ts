import { describe, expect, it } from '@jest/globals';
import { CredentialEngineError } from './credential-engine.js';
import { NetworkDialPolicy, ownService, type DialPolicyOptions } from './dial-policy.js';

const DNS: Record<string, string[]> = {
  localhost: ['127.0.0.1', '::1'],
  'db.internal': ['10.1.2.3'],
  'sigil-pg.svc': ['10.9.0.5'],
  'split.example': ['10.1.2.4', '169.254.169.254'], // one good answer, one metadata
};
const resolve = (host: string) => (DNS[host] ? Promise.resolve(DNS[host]) : Promise.reject(new Error('ENOTFOUND')));

const policy = (over: Partial<DialPolicyOptions> = {}) =>
  new NetworkDialPolicy({
    denied: [],
    allowed: [],
    own: [ownService('postgres://sigil:pw@127.0.0.1:5433/sigil')!, ownService('redis://127.0.0.1:6380')!],
    resolve,
    ...over,
  });
const login = { database: 'orders', username: 'sigil_admin' };

async function refusal(p: Promise<unknown>): Promise<CredentialEngineError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CredentialEngineError);
  return err as CredentialEngineError;
}

describe('connection dial policy', () => {
  it('dials the checked address, never the name again', async () => {
    expect(await policy().addressFor('db.internal', 5432, login)).toBe('10.1.2.3');
    expect(await policy().addressFor('10.0.0.7', 5432, login)).toBe('10.0.0.7');
    expect(await policy().addressFor('[fd12::7]', 5432, login)).toBe('fd12::7');
  });

  it("refuses Sigil's own Redis on any loopback spelling, and Sigil's own database or user on its PostgreSQL", async () => {
    for (const host of ['127.0.0.1', 'localhost', '::1', '127.0.0.2', '::ffff:127.0.0.1']) {
      const redis = await refusal(policy().addressFor(host, 6380, login));
      expect(redis.code).toBe('host_denied');
      expect(redis.message).toContain("is one of Sigil's own services");
    }
    for (const host of ['0.0.0.0', '::']) expect((await refusal(policy().addressFor(host, 6380, login))).code).toBe('host_denied');
    expect((await refusal(policy().addressFor('localhost', 5433, { database: 'sigil', username: 'x' }))).code).toBe('host_denied');
    const user = await refusal(policy().addressFor('127.0.0.1', 5433, { database: 'orders', username: 'sigil' }));
    // One message for every case: which database or user is Sigil's is not told.
    expect(user.message).toContain("is one of Sigil's own services");
    expect(user.message).not.toContain('sigil ');
    // Another database and admin on the same server are a target like any other; another port is another server.
    expect(await policy().addressFor('127.0.0.1', 5433, login)).toBe('127.0.0.1');
    expect(await policy().addressFor('127.0.0.1', 6381, login)).toBe('127.0.0.1');
  });

  it("resolves Sigil's own services by name too, and compares every spelling of an address", async () => {
    const p = policy({ own: [ownService('redis://sigil-pg.svc:6379')!, ownService('postgres://sigil@[fd00:10::5]/sigil')!] });
    for (const host of ['10.9.0.5', '::ffff:a09:5', '0:0:0:0:0:ffff:a09:5', '::ffff:0a09:0005'])
      expect({ host, code: (await refusal(p.addressFor(host, 6379, login))).code }).toEqual({ host, code: 'host_denied' });
    for (const host of ['FD00:10::5', 'fd00:10:0::5', 'fd00:10::0:5'])
      expect((await refusal(p.addressFor(host, 5432, { database: 'sigil', username: 'x' }))).code).toBe('host_denied');
  });

  it('refuses the port of an own service whose name does not resolve now (fail closed), and asks again next time', async () => {
    let up = false;
    const flaky = (host: string) => (host === 'sigil-redis.svc' && !up ? Promise.reject(new Error('EAI_AGAIN')) : resolve(host));
    const p = policy({ own: [ownService('redis://sigil-redis.svc:6379')!], resolve: flaky });
    expect((await refusal(p.addressFor('10.1.2.3', 6379, login))).code).toBe('host_denied');
    expect(await p.addressFor('10.1.2.3', 5432, login)).toBe('10.1.2.3'); // other ports are not affected
    up = true;
    DNS['sigil-redis.svc'] = ['10.9.0.7'];
    await new Promise((r) => setTimeout(r, 10));
    expect(await p.addressFor('10.1.2.3', 6379, login)).toBe('10.1.2.3');
    expect((await refusal(p.addressFor('10.9.0.7', 6379, login))).code).toBe('host_denied');
  });

  it('refuses cloud metadata and link-local, also as an IPv4-mapped IPv6 address', async () => {
    for (const host of [
      '169.254.169.254',
      '::ffff:169.254.169.254',
      '::ffff:a9fe:a9fe',
      'fe80::1',
      '100.100.100.200',
      'fd00:ec2::254',
      '0.0.0.0',
      '64:ff9b::a9fe:a9fe',
    ]) {
      const err = await refusal(policy().addressFor(host, 80, login));
      expect(err.code).toBe('host_denied');
      expect(err.message).toContain('SIGIL_CONNECTION_DENIED_NETWORKS');
    }
  });

  it('refuses a name when any of its addresses is refused', async () => {
    expect((await refusal(policy().addressFor('split.example', 5432, login))).message).toContain('169.254.169.254');
  });

  it('with an allowlist, reaches only those networks', async () => {
    const p = policy({ allowed: ['10.0.0.0/8'] });
    expect(await p.addressFor('db.internal', 5432, login)).toBe('10.1.2.3');
    expect((await refusal(p.addressFor('192.168.1.1', 5432, login))).message).toContain('SIGIL_CONNECTION_ALLOWED_NETWORKS');
    // The denied list still wins inside the allowed networks.
    expect((await refusal(policy({ allowed: ['0.0.0.0/0'] }).addressFor('169.254.169.254', 80, login))).code).toBe('host_denied');
  });

  it('a name that does not resolve is unreachable, not denied', async () => {
    expect((await refusal(policy().addressFor('nowhere.invalid', 5432, login))).code).toBe('unreachable');
  });

  it("reads Sigil's own services from its URLs", () => {
    expect(ownService('postgresql://u%40x:p@db:6000/sig%2Dil')).toEqual({ host: 'db', port: 6000, database: 'sig-il', username: 'u@x' });
    // As pg reads it: ?user= and ?port= win, and no database means the user's.
    expect(ownService('postgres://a:p@db/?user=sigil&port=6001')).toEqual({ host: 'db', port: 6001, database: 'sigil', username: 'sigil' });
    expect(ownService('postgres://u:p@db/sigil')).toMatchObject({ port: 5432 });
    expect(ownService('rediss://cache')).toEqual({ host: 'cache', port: 6379 });
    expect(ownService('postgres://u@/sigil?host=/run/postgresql')).toBeUndefined();
  });
});
