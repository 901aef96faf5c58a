import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { DeliveryMode, type DesiredSecret } from '@sigil/agent-protocol';
import { InjectionCache, type CachedInjection } from './injection-cache.js';

const entry: DesiredSecret = {
  projectId: 'p',
  app: 'pay',
  secret: 'pay-db',
  secretId: 's',
  version: 3,
  target: { namespace: 'shop', name: 'pay-db' },
  type: 'Opaque',
  deliveryMode: DeliveryMode.DELIVERY_MODE_INJECT,
  envelope: Buffer.from('SGE1-envelope'),
  generation: 7n,
  consumers: [{ namespace: 'shop', serviceAccount: 'pay' }],
};
const content: CachedInjection = {
  cluster: 'edge-1',
  deliveryPrivateKeyPem: '-----BEGIN PRIVATE KEY-----\ncache-canary-key\n-----END PRIVATE KEY-----\n',
  clusterKeyEnvelopes: [Buffer.from('SGK1')],
  entries: [entry],
  authority: { keyPem: 'k', certificatePem: 'c' },
};

describe('InjectionCache', () => {
  it('round-trips sealed: nothing of it readable in the file, the key file made 0600', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'sigil-cache-'));
    const cache = new InjectionCache(path.join(dir, 'cache'), path.join(dir, 'key', 'cache.key'));
    await cache.save(content);
    const file = await readFile(path.join(dir, 'cache', 'injection-cache.sgc'));
    expect(file.subarray(0, 4).toString()).toBe('SGC1');
    for (const s of ['cache-canary-key', 'SGE1-envelope', 'pay-db']) expect(file.includes(s)).toBe(false);
    expect((await stat(path.join(dir, 'key', 'cache.key'))).mode & 0o777).toBe(0o600);
    expect(await new InjectionCache(path.join(dir, 'cache'), path.join(dir, 'key', 'cache.key')).load('edge-1')).toEqual({
      ...content,
      sealedAt: expect.any(Date),
    });
  });

  it('is not served, and is deleted, once older than its maximum age', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'sigil-cache-'));
    const cache = new InjectionCache(dir, path.join(dir, 'k'));
    await cache.save(content);
    await new Promise((r) => setTimeout(r, 20));
    expect(await cache.load('edge-1', 10)).toBeUndefined();
    expect(await cache.load('edge-1')).toBeUndefined(); // gone
  });

  it('does not open under another key or for another cluster, and is absent when never written', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'sigil-cache-'));
    await new InjectionCache(dir, path.join(dir, 'a.key')).save(content);
    await writeFile(path.join(dir, 'b.key'), randomBytes(32));
    await expect(new InjectionCache(dir, path.join(dir, 'b.key')).load('edge-1')).rejects.toThrow();
    await expect(new InjectionCache(dir, path.join(dir, 'a.key')).load('edge-2')).rejects.toThrow();
    expect(await new InjectionCache(path.join(dir, 'none'), path.join(dir, 'a.key')).load('edge-1')).toBeUndefined();
    await writeFile(path.join(dir, 'short.key'), randomBytes(16));
    await expect(new InjectionCache(dir, path.join(dir, 'short.key')).load('edge-1')).rejects.toThrow('32 bytes');
  });
});
