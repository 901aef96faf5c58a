import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  decodeSecretEnvelope,
  encodeSecretEnvelope,
  generateAgentKeyPair,
  openClusterKeyEnvelope,
  openSecretEnvelope,
  type ValueContext,
} from '@sigil/envelope';
import { ClusterKeyService } from '../../apps/control-plane/src/keys/cluster-keys.service.js';
import { EnvelopeService } from '../../apps/control-plane/src/keys/envelopes.service.js';
import { SealedValueService } from '../../apps/control-plane/src/keys/sealed-values.service.js';
import { acquireLibrary, findSlotByLabel, releaseLibrary } from '../../apps/control-plane/src/hsm/pkcs11-library.js';
import { registerCluster, startTestApp, type TestApp } from '../harness/app-context.js';
import { testEnv } from '../harness/test-env.js';

/** An agent as the cluster sees it: its own key pair, and the delivery keys it received. */
class Agent {
  readonly keys = generateAgentKeyPair();
  readonly clusterKeys = new Map<number, Buffer>();
  clusterId = '';

  receive(envelope: Buffer): void {
    const { version, key } = openClusterKeyEnvelope(this.keys.privateKeyPem, envelope);
    this.clusterKeys.set(version, key);
  }

  open(envelope: Buffer, ctx: ValueContext): string {
    return openSecretEnvelope(envelope, this.clusterKeys, ctx).toString('utf8');
  }
}

const ctx = (secret: string, version = 1): ValueContext => ({
  projectId: 'a5b9d7a4-5d5e-4a7e-9d55-0c0c3f3b2f10',
  app: 'checkout',
  secret,
  secretId: `id-${secret}`,
  version,
});

describe('key custody against SoftHSM', () => {
  let t: TestApp;
  let sealer: SealedValueService;
  let clusterKeys: ClusterKeyService;
  let envelopes: EnvelopeService;
  const a = new Agent();
  const b = new Agent();

  beforeAll(async () => {
    t = await startTestApp();
    sealer = t.app.get(SealedValueService);
    clusterKeys = t.app.get(ClusterKeyService);
    envelopes = t.app.get(EnvelopeService);
    a.clusterId = await registerCluster(t.app);
    b.clusterId = await registerCluster(t.app);
    a.receive((await clusterKeys.issue(a.clusterId, a.keys.publicKeyDer)).envelope);
    b.receive((await clusterKeys.issue(b.clusterId, b.keys.publicKeyDer)).envelope);
  });
  afterAll(async () => {
    await t.dispose();
  });

  it('round-trips a value from the centre to an agent', async () => {
    const [id] = await sealer.seal([{ value: Buffer.from('postgres://app:s3cret@db/app'), context: ctx('DATABASE_URL') }]);
    const env = await envelopes.forClusters([a.clusterId], [id!]);
    expect(a.open(env.get(a.clusterId)![0]!, ctx('DATABASE_URL'))).toBe('postgres://app:s3cret@db/app');
  });

  it("does not open cluster A's blob with cluster B's key, after any byte changes, or in another context", async () => {
    const [id] = await sealer.seal([{ value: Buffer.from('only-for-a'), context: ctx('TOKEN', 3) }]);
    const envelope = (await envelopes.forClusters([a.clusterId], [id!])).get(a.clusterId)![0]!;
    expect(a.open(envelope, ctx('TOKEN', 3))).toBe('only-for-a');

    // B holds a delivery key with the same version number, but a different key.
    expect(() => b.open(envelope, ctx('TOKEN', 3))).toThrow('does not open');
    for (let i = 4; i < envelope.length; i++) {
      const tampered = Buffer.from(envelope);
      tampered[i]! ^= 0x01;
      expect(() => a.open(tampered, ctx('TOKEN', 3))).toThrow();
    }
    for (const other of [
      ctx('TOKEN', 4),
      ctx('OTHER', 3),
      { ...ctx('TOKEN', 3), app: 'billing' },
      { ...ctx('TOKEN', 3), projectId: randomUUID() },
      { ...ctx('TOKEN', 3), secretId: randomUUID() },
    ]) {
      expect(() => a.open(envelope, other)).toThrow('does not open');
    }
    // Swapping in another value's ciphertext (same cluster, same key) fails too: AAD binds it.
    const [id2] = await sealer.seal([{ value: Buffer.from('another'), context: ctx('OTHER', 1) }]);
    const other = decodeSecretEnvelope((await envelopes.forClusters([a.clusterId], [id2!])).get(a.clusterId)![0]!);
    expect(() => a.open(encodeSecretEnvelope(other), ctx('TOKEN', 3))).toThrow('does not open');
  });

  it('runs hundreds of parallel operations without crashing or corrupting anything', async () => {
    const values = Array.from({ length: 300 }, (_, i) => `value-${i}-${randomBytes(8).toString('hex')}`);
    const ids = await Promise.all(values.map((v, i) => sealer.seal([{ value: Buffer.from(v), context: ctx(`S${i}`) }]).then((r) => r[0]!)));
    const opened = await Promise.all(
      ids.map(async (id, i) => {
        const env = await envelopes.forClusters([a.clusterId, b.clusterId], [id]);
        return [a.open(env.get(a.clusterId)![0]!, ctx(`S${i}`)), b.open(env.get(b.clusterId)![0]!, ctx(`S${i}`))];
      }),
    );
    expect(opened).toEqual(values.map((v) => [v, v]));
  });

  it('recovers lost HSM sessions without a restart', async () => {
    const { module, tokenLabel } = testEnv().hsm;
    const p = acquireLibrary(module);
    try {
      p.C_CloseAllSessions(findSlotByLabel(p, tokenLabel)!); // every session of this process, the workers' included
    } finally {
      releaseLibrary(module);
    }
    const [id] = await sealer.seal([{ value: Buffer.from('after-loss'), context: ctx('AFTER') }]);
    const env = await envelopes.forClusters([b.clusterId], [id!]);
    expect(b.open(env.get(b.clusterId)![0]!, ctx('AFTER'))).toBe('after-loss');
  });

  it('a new cluster key version: new envelopes use it, the agent opens both', async () => {
    const rotated = await clusterKeys.issue(a.clusterId, a.keys.publicKeyDer);
    expect(rotated.version).toBe(2);
    a.receive(rotated.envelope);
    const [id] = await sealer.seal([{ value: Buffer.from('v2-key'), context: ctx('ROTATED') }]);
    const envelope = (await envelopes.forClusters([a.clusterId], [id!])).get(a.clusterId)![0]!;
    expect(decodeSecretEnvelope(envelope).clusterKeyVersion).toBe(2);
    expect(a.open(envelope, ctx('ROTATED'))).toBe('v2-key');
    a.clusterKeys.delete(1);
    expect(a.open(envelope, ctx('ROTATED'))).toBe('v2-key');
  });

  it('zeroes the caller’s plaintext buffer once sealed', async () => {
    const value = Buffer.from('wipe-me');
    await sealer.seal([{ value, context: ctx('WIPE') }]);
    expect(value.equals(Buffer.alloc(7))).toBe(true);
  });

  it('rejects agent keys that are not RSA keys of 3072 to 8192 bits', async () => {
    await expect(clusterKeys.issue(a.clusterId, Buffer.from('not a key'))).rejects.toMatchObject({ code: 'invalid_agent_key' });
  });
});
