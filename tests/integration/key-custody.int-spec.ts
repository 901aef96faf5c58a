import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { DesiredSecret } from '@sigil/agent-protocol';
import { decodeSecretEnvelope, decodeSecretPayload, encodeSecretEnvelope, openSecretEnvelope, type ValueContext } from '@sigil/envelope';
import { AppsService } from '../../apps/control-plane/src/apps/apps.service.js';
import { Actor } from '../../apps/control-plane/src/auth/policy.js';
import { ClustersService } from '../../apps/control-plane/src/clusters/clusters.service.js';
import { PublicationsService } from '../../apps/control-plane/src/publications/publications.service.js';
import { acquireLibrary, findSlotByLabel, releaseLibrary } from '../../apps/control-plane/src/hsm/pkcs11-library.js';
import { ClusterKeyService } from '../../apps/control-plane/src/keys/cluster-keys.service.js';
import { SealedValueService } from '../../apps/control-plane/src/keys/sealed-values.service.js';
import { SecretsService } from '../../apps/control-plane/src/secrets/secrets.service.js';
import { agentEndpoint, projectWithApp, startTestApp, type TestApp } from '../harness/app-context.js';
import { deliveryKeys, enrollAgent, SyncSession, type EnrolledAgent } from '../harness/sync-session.js';
import { testEnv, uniqueName } from '../harness/test-env.js';
import { eventually } from '../harness/eventually.js';

// Key custody on the path production delivers by: values written through SecretsService (sealed
// in the HSM), published, built by the delivery job (data keys re-wrapped in the HSM under each
// cluster's delivery key) and read off a real Sync stream, opened as an agent opens them.

const admin = new Actor('test', 'test-admin', 'admin', null);

/** What an agent holds after a complete state: its delivery keys and the secrets it was sent. */
interface Received {
  keys: Map<number, Buffer>;
  secrets: Map<string, DesiredSecret>;
}

const contextOf = (s: DesiredSecret): ValueContext => ({
  projectId: s.projectId,
  app: s.app,
  secret: s.secret,
  secretId: s.secretId,
  version: s.version,
});

/** Opens `envelope` with `keys` in `ctx` and returns the value of its key `VALUE`. */
const open = (envelope: Buffer, keys: Map<number, Buffer>, ctx: ValueContext) =>
  decodeSecretPayload(openSecretEnvelope(envelope, keys, ctx))
    .get('VALUE')
    ?.toString('utf8');

describe('key custody against SoftHSM, on the delivery path', () => {
  let t: TestApp;
  let secrets: SecretsService;
  let a: EnrolledAgent;
  let b: EnrolledAgent;
  const project = uniqueName('p');

  /** The complete state a fresh stream (as after a restart) sends, once it holds `want` (secret → version). */
  const receive = (agent: EnrolledAgent, want: Record<string, number> = {}): Promise<Received> =>
    eventually(
      `a state holding ${Object.keys(want).length} secrets`,
      async () => {
        const s = new SyncSession(agent.client, { appliedGeneration: 0n });
        try {
          const state = await s.state(1);
          const sent = new Map(state.secrets.map((d) => [d.secret, d]));
          if (!Object.entries(want).every(([name, version]) => sent.get(name)?.version === version)) return undefined; // not built yet
          const keys = deliveryKeys(agent, state.keyEnvelopes);
          return { keys, secrets: sent };
        } finally {
          s.cancel();
        }
      },
      30_000,
      200,
    );

  const write = (app: string, name: string, value: string) =>
    secrets.create(admin, project, app, { name, data: { VALUE: value } }).then((r) => r.current!.version);

  beforeAll(async () => {
    t = await startTestApp();
    secrets = t.app.get(SecretsService);
    await projectWithApp(t.app, admin, { project, app: 'checkout', namespace: 'shop' });
    await t.app.get(AppsService).create(admin, project, { name: 'bulk', namespace: 'shop', deliveryMode: 'env' });
    const publications = t.app.get(PublicationsService);
    const clusters = t.app.get(ClustersService);
    const { address, caPem } = agentEndpoint(t.app);
    const [na, nb] = [uniqueName('a'), uniqueName('b')];
    for (const n of [na, nb]) await clusters.register(n, {});
    a = await enrollAgent(address, caPem, na, (await clusters.createEnrollmentToken(admin, na)).token);
    b = await enrollAgent(address, caPem, nb, (await clusters.createEnrollmentToken(admin, nb)).token);
    await publications.publish(admin, project, 'checkout', { clusters: [na] });
    await publications.publish(admin, project, 'bulk', { clusters: [na, nb] });
  }, 60_000);

  afterAll(async () => {
    a?.close();
    b?.close();
    await t?.dispose();
  });

  it('round-trips a value from the REST write to the agent', async () => {
    const version = await write('checkout', 'database-url', 'postgres://app:s3cret@db/app');
    const got = await receive(a, { 'database-url': version });
    const d = got.secrets.get('database-url')!;
    expect(open(d.envelope, got.keys, contextOf(d))).toBe('postgres://app:s3cret@db/app');
  });

  it("does not open cluster A's blob with cluster B's key, after any byte changes, or in another context", async () => {
    const version = await write('checkout', 'token', 'only-for-a');
    const got = await receive(a, { token: version });
    const d = got.secrets.get('token')!;
    const ctx = contextOf(d);
    expect(open(d.envelope, got.keys, ctx)).toBe('only-for-a');

    // B holds a delivery key with the same version number, but a different key; and was never sent the app.
    const atB = await receive(b);
    expect(atB.secrets.has('token')).toBe(false);
    expect([...atB.keys.keys()]).toEqual([...got.keys.keys()]);
    expect(() => open(d.envelope, atB.keys, ctx)).toThrow('does not open');
    for (let i = 4; i < d.envelope.length; i++) {
      const tampered = Buffer.from(d.envelope);
      tampered[i]! ^= 0x01;
      expect(() => open(tampered, got.keys, ctx)).toThrow();
    }
    for (const other of [
      { ...ctx, version: ctx.version + 1 },
      { ...ctx, secret: 'other' },
      { ...ctx, app: 'billing' },
      { ...ctx, projectId: randomUUID() },
      { ...ctx, secretId: randomUUID() },
    ]) {
      expect(() => open(d.envelope, got.keys, other)).toThrow('does not open');
    }
    // Swapping in another value's ciphertext (same cluster, same key) fails too: the AAD binds it.
    const otherVersion = await write('checkout', 'other', 'another');
    const swapped = decodeSecretEnvelope((await receive(a, { other: otherVersion })).secrets.get('other')!.envelope);
    expect(() => open(encodeSecretEnvelope(swapped), got.keys, ctx)).toThrow('does not open');
  });

  it('seals hundreds of values, many at once, and delivers every one intact to both clusters', async () => {
    const values = Array.from({ length: 200 }, (_, i) => [`s${i}`, `value-${i}-${randomBytes(8).toString('hex')}`] as const);
    // 20 writes at a time: the HSM workers are kept busy in parallel; the database pool (20) is not flooded into 503s.
    const versions: number[] = [];
    for (let i = 0; i < values.length; i += 20)
      versions.push(...(await Promise.all(values.slice(i, i + 20).map(([name, v]) => write('bulk', name, v)))));
    const want = Object.fromEntries(values.map(([name], i) => [name, versions[i]!]));
    for (const agent of [a, b]) {
      const got = await receive(agent, want);
      const opened = values.map(([name]) => {
        const d = got.secrets.get(name)!;
        return open(d.envelope, got.keys, contextOf(d));
      });
      expect(opened).toEqual(values.map(([, v]) => v));
    }
  }, 120_000);

  it('recovers lost HSM sessions without a restart', async () => {
    const { module, tokenLabel } = testEnv().hsm;
    const p = acquireLibrary(module);
    try {
      p.C_CloseAllSessions(findSlotByLabel(p, tokenLabel)!); // every session of this process, the workers' included
    } finally {
      releaseLibrary(module);
    }
    const version = await write('bulk', 'after-loss', 'after-loss');
    const got = await receive(b, { 'after-loss': version });
    const d = got.secrets.get('after-loss')!;
    expect(open(d.envelope, got.keys, contextOf(d))).toBe('after-loss');
  });

  it('a new cluster key version (re-enrollment): what is built afterwards uses it, which the agent receives and opens', async () => {
    const rotated = await t.app.get(ClusterKeyService).issue(a.clusterId, a.delivery.publicKeyDer);
    expect(rotated.version).toBe(2);
    const version = await write('checkout', 'rotated', 'v2-key');
    const got = await receive(a, { rotated: version });
    const d = got.secrets.get('rotated')!;
    expect(decodeSecretEnvelope(d.envelope).clusterKeyVersion).toBe(2);
    expect(got.keys.has(2)).toBe(true);
    got.keys.delete(1);
    expect(open(d.envelope, got.keys, contextOf(d))).toBe('v2-key');
  });

  it('zeroes the caller’s plaintext buffer once sealed', async () => {
    const value = Buffer.from('wipe-me');
    const [id] = await t.app
      .get(SealedValueService)
      .seal([{ value, context: { projectId: randomUUID(), app: 'checkout', secret: 'wipe', secretId: randomUUID(), version: 1 } }]);
    expect(id).toBeDefined();
    expect(value.equals(Buffer.alloc(7))).toBe(true);
  });

  it('rejects agent keys that are not RSA keys of 3072 to 8192 bits', async () => {
    await expect(t.app.get(ClusterKeyService).issue(a.clusterId, Buffer.from('not a key'))).rejects.toMatchObject({
      code: 'invalid_agent_key',
    });
  });
});
