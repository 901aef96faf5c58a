import { afterAll, describe, expect, it } from '@jest/globals';
import { generateAgentKeyPair, openClusterKeyEnvelope, openSecretEnvelope, type ValueContext } from '@sigil/envelope';
import pg from 'pg';
import { ClusterKeyService } from '../../apps/control-plane/src/keys/cluster-keys.service.js';
import { EnvelopeService } from '../../apps/control-plane/src/keys/envelopes.service.js';
import { RootKeyRotationService } from '../../apps/control-plane/src/keys/root-key-rotation.service.js';
import { RootKeyService } from '../../apps/control-plane/src/keys/root-keys.service.js';
import { SealedValueService } from '../../apps/control-plane/src/keys/sealed-values.service.js';
import { registerCluster, startTestApp, type TestApp } from '../harness/app-context.js';
import { listTokenObjects } from '../harness/pkcs11-tool.js';
import { eventually, holds } from '../harness/eventually.js';

const N = 1_000;
const ctx = (i: number): ValueContext => ({
  projectId: 'f0f5d5a2-8e0e-4c9e-a1a6-2b8d5c5c0001',
  app: 'payments',
  secret: `KEY_${i}`,
  secretId: `id-${i}`,
  version: 1,
});

async function versionsInUse(url: string): Promise<Record<string, number>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ v: number; n: string }>(
      'SELECT root_key_version AS v, count(*) AS n FROM (SELECT root_key_version FROM sealed_values UNION ALL SELECT root_key_version FROM cluster_keys) x GROUP BY 1',
    );
    return Object.fromEntries(rows.map((r) => [`v${r.v}`, Number(r.n)]));
  } finally {
    await client.end();
  }
}

describe('root key rotation', () => {
  const apps: TestApp[] = [];
  afterAll(async () => {
    for (const a of apps.reverse()) await a.close();
    await apps[0]?.dispose();
  });

  it(`re-wraps ${N} data keys and the cluster keys, survives a restart half-way, and agents still decrypt everything`, async () => {
    // First process: no worker role, so the rotation does not run by itself; we run one batch.
    const first = await startTestApp({ roles: ['http'] });
    apps.push(first);
    const agents = [];
    for (let i = 0; i < 3; i++)
      agents.push({ clusterId: await registerCluster(first.app), keys: generateAgentKeyPair(), cdk: new Map<number, Buffer>() });
    for (const agent of agents) {
      const { version, key } = openClusterKeyEnvelope(
        agent.keys.privateKeyPem,
        (await first.app.get(ClusterKeyService).issue(agent.clusterId, agent.keys.publicKeyDer)).envelope,
      );
      agent.cdk.set(version, key);
    }
    const values = Array.from({ length: N }, (_, i) => `value-${i}`);
    const ids = await first.app.get(SealedValueService).seal(values.map((v, i) => ({ value: Buffer.from(v), context: ctx(i) })));
    expect(await versionsInUse(first.databaseUrl)).toEqual({ v1: N + 3 });

    const rotation = await first.app.get(RootKeyRotationService).start();
    expect(rotation).toMatchObject({ fromVersion: 1, toVersion: 2, total: N + 3, state: 'running' });
    expect(await first.app.get(RootKeyRotationService).run(rotation.id, 1)).toBe(500);
    expect(await versionsInUse(first.databaseUrl)).toEqual({ v1: N + 3 - 500, v2: 500 });
    // New values are sealed under the new root key straight away.
    const [fresh] = await first.app.get(SealedValueService).seal([{ value: Buffer.from('sealed-mid-rotation'), context: ctx(N) }]);
    await first.close(); // "restart"

    const second = await startTestApp({ reuse: first });
    apps.push(second);
    const rotations = second.app.get(RootKeyRotationService);
    await eventually(
      'rotation completed after the restart',
      async () => holds((await rotations.status(rotation.id))?.state === 'completed'),
      30_000,
      50,
    );
    expect(await versionsInUse(first.databaseUrl)).toEqual({ v2: N + 4 });
    expect(await rotations.status(rotation.id)).toMatchObject({ state: 'completed', done: N + 3 });

    // Every agent decrypts every value with the delivery key it already had (it did not change).
    const envelopes = await second.app.get(EnvelopeService).forClusters(
      agents.map((a) => a.clusterId),
      [...ids, fresh!],
    );
    for (const agent of agents) {
      const opened = envelopes.get(agent.clusterId)!.map((e, i) => openSecretEnvelope(e, agent.cdk, ctx(i)).toString());
      expect(opened).toEqual([...values, 'sealed-mid-rotation']);
    }

    // The old root key can now be destroyed; the HSM then holds only version 2, non-extractable.
    const rootKeys = second.app.get(RootKeyService);
    await rootKeys.destroy(1);
    const listed = await rootKeys.list();
    expect(listed.map((k) => [k.version, k.state, k.references])).toEqual([
      [1, 'destroyed', 0],
      [2, 'active', N + 4],
    ]);
    expect(listed[1]!.hsm).toEqual({ sensitive: true, extractable: false, neverExtractable: true, alwaysSensitive: true });
    const objects = listTokenObjects().filter((o) => o.label.startsWith(`${first.keyLabelPrefix}-root-`));
    expect(objects).toEqual([
      {
        kind: 'Secret Key Object; AES length 32',
        label: `${first.keyLabelPrefix}-root-v2`,
        usage: ['wrap', 'unwrap'],
        access: expect.arrayContaining(['sensitive', 'always sensitive', 'never extractable', 'local']),
      },
    ]);
  });

  it('refuses to destroy the active root key or one still in use', async () => {
    const t = await startTestApp({ roles: ['http'] });
    apps.push(t);
    await t.app.get(SealedValueService).seal([{ value: Buffer.from('x'), context: ctx(0) }]);
    await expect(t.app.get(RootKeyService).destroy(1)).rejects.toMatchObject({ code: 'root_key_not_retired' });
    const rotation = await t.app.get(RootKeyRotationService).start();
    await expect(t.app.get(RootKeyRotationService).start()).rejects.toMatchObject({ code: 'rotation_in_progress' });
    await expect(t.app.get(RootKeyService).destroy(1)).rejects.toMatchObject({ code: 'root_key_in_use' });
    await t.app.get(RootKeyRotationService).run(rotation.id);
    await t.app.get(RootKeyService).destroy(1);
    await t.dispose();
  });
});

describe('the HSM token', () => {
  it('holds only installation-wide keys: root keys, the fingerprint, audit and TLS session-ticket keys and the CA key pair — private parts sensitive, never extractable, generated inside', () => {
    const objects = listTokenObjects();
    expect(objects.some((o) => /-root-v\d+$/.test(o.label))).toBe(true);
    for (const o of objects) {
      if (o.kind.startsWith('Public Key Object')) {
        expect(o.label).toMatch(/-ca-v1$/); // the CA's public half
        continue;
      }
      expect(o.access).toEqual(expect.arrayContaining(['sensitive', 'always sensitive', 'never extractable', 'local']));
      if (/-root-v\d+$/.test(o.label)) {
        expect(o.kind).toBe('Secret Key Object; AES length 32');
        expect(o.usage).toEqual(['wrap', 'unwrap']);
      } else if (/-ca-v1$/.test(o.label)) {
        expect(o.kind).toMatch(/^Private Key Object; EC/);
        expect(o.usage).toEqual(['sign']);
      } else {
        expect(o.label).toMatch(/-(fingerprint|audit|tls-tickets)-v1$/); // HMAC keys
        expect(o.kind).toMatch(/^Secret Key Object; (Generic secret|GENERIC_SECRET)/i);
        // pkcs11-tool lists no "sign" for secret keys; neither can encrypt, decrypt, wrap, unwrap or derive.
        expect(o.usage).toEqual(o.label.endsWith('-audit-v1') ? ['verify'] : ['none']);
      }
    }
  });
});
