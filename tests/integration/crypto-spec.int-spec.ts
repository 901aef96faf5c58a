import {
  constants,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  privateDecrypt,
  randomBytes,
} from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { status } from '@grpc/grpc-js';
import { AppsService } from '../../apps/control-plane/src/apps/apps.service.js';
import { Actor } from '../../apps/control-plane/src/auth/policy.js';
import { ClustersService } from '../../apps/control-plane/src/clusters/clusters.service.js';
import { PublicationsService } from '../../apps/control-plane/src/publications/publications.service.js';
import { ProjectsService } from '../../apps/control-plane/src/projects/projects.service.js';
import { SecretsService } from '../../apps/control-plane/src/secrets/secrets.service.js';
import { agentEndpoint, startTestApp, type TestApp } from '../harness/app-context.js';
import { eventually } from '../harness/eventually.js';
import { uniqueName } from '../harness/test-env.js';
import { failureOf, TestAgent } from '../harness/test-agent.js';

// docs/crypto.md is the spec of what an agent receives. The real control plane (SoftHSM,
// PostgreSQL, mTLS gRPC) seals, publishes and delivers a secret to a really enrolled cluster;
// the envelopes it hands out are then opened by the decoder below, written from docs/crypto.md
// alone with node:crypto: no @sigil/envelope, no Sigil code. (TestAgent is only the transport.)

/** docs/crypto.md, "Opening an envelope", step by step. */
const fromTheSpec = {
  /** SGK1: magic, u32 version, u8 OAEP hash id, u16 n, n bytes RSA-OAEP (MGF1 same hash, empty label). */
  openClusterKey(privateKeyPem: string, sgk1: Buffer): { version: number; key: Buffer } {
    if (sgk1.subarray(0, 4).toString('latin1') !== 'SGK1') throw new Error('not SGK1');
    const version = sgk1.readUInt32BE(4);
    const hash = ({ 1: 'sha1', 2: 'sha256' } as Record<number, string>)[sgk1.readUInt8(8)];
    if (!hash) throw new Error('unknown OAEP hash id');
    const n = sgk1.readUInt16BE(9);
    if (sgk1.length !== 11 + n) throw new Error('SGK1 length');
    const key = privateDecrypt(
      { key: createPrivateKey(privateKeyPem), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash },
      sgk1.subarray(11),
    );
    if (key.length !== 32) throw new Error('cluster key must be 32 bytes');
    return { version, key };
  },

  /** SGE1 → AES-KWP unwrap of the data key → AES-256-GCM with the AAD → the payload bytes. */
  openSecret(
    sge1: Buffer,
    clusterKeys: Map<number, Buffer>,
    ctx: { projectId: string; app: string; secret: string; secretId: string; version: number },
  ): Buffer {
    if (sge1.subarray(0, 4).toString('latin1') !== 'SGE1') throw new Error('not SGE1');
    const cdk = clusterKeys.get(sge1.readUInt32BE(4));
    if (!cdk) throw new Error('no cluster key of that version');
    const n = sge1.readUInt16BE(8);
    const wrappedDek = sge1.subarray(10, 10 + n);
    const iv = sge1.subarray(10 + n, 22 + n);
    const rest = sge1.subarray(22 + n);
    const unwrap = createDecipheriv('id-aes256-wrap-pad', cdk, Buffer.from('a65959a6', 'hex'));
    const dek = Buffer.concat([unwrap.update(wrappedDek), unwrap.final()]);
    const aad = Buffer.from(['sigil/value/v1', ctx.projectId, ctx.app, ctx.secret, ctx.secretId, String(ctx.version)].join('\0'), 'utf8');
    const gcm = createDecipheriv('aes-256-gcm', dek, iv, { authTagLength: 16 });
    gcm.setAAD(aad);
    gcm.setAuthTag(rest.subarray(rest.length - 16));
    return Buffer.concat([gcm.update(rest.subarray(0, rest.length - 16)), gcm.final()]);
  },

  /** Payload: UTF-8 JSON {"v":1,"data":{key: base64}}; `data` is the Kubernetes Secret's `data`. */
  secretData(payload: Buffer): Record<string, string> {
    const p = JSON.parse(payload.toString('utf8')) as { v: number; data: Record<string, string> };
    if (p.v !== 1) throw new Error('payload version');
    return p.data;
  },
};

const admin = new Actor('00000000-0000-4000-8000-000000000001', 'test-admin', 'admin', null);
const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');

describe('docs/crypto.md decrypts what the control plane really delivers', () => {
  let t: TestApp;
  let clusters: ClustersService;
  let endpoint: { address: string; caPem: string };
  const project = uniqueName('p');
  const binary = randomBytes(48); // not valid UTF-8: must arrive byte for byte
  const agents: TestAgent[] = [];

  beforeAll(async () => {
    t = await startTestApp();
    clusters = t.app.get(ClustersService);
    endpoint = agentEndpoint(t.app);
    await t.app.get(ProjectsService).create({ name: project });
    await t.app.get(ProjectsService).setNamespaces(admin, project, ['shop']);
    await t.app.get(AppsService).create(admin, project, { name: 'checkout', namespace: 'shop', deliveryMode: 'env' });
    const secrets = t.app.get(SecretsService);
    await secrets.create(admin, project, 'checkout', { name: 'checkout-db', data: { USER: 'app', PASSWORD: 'pä$$ wörd' } });
    // Version 2 (the one delivered): a text key and a binary key.
    await secrets.update(
      admin,
      project,
      'checkout',
      'checkout-db',
      { data: { USER: 'app', PASSWORD: 'r0tated' }, binaryData: { 'tls.p12': binary.toString('base64') } },
      undefined,
    );
    await t.app.get(PublicationsService).setProjectSelector(admin, project, {});
  });

  afterAll(async () => {
    for (const a of agents) a.close();
    await t?.dispose();
  });

  const newAgent = async () => {
    const name = uniqueName('c');
    await clusters.register(name, { spec: 'crypto' });
    const agent = new TestAgent(endpoint.address, endpoint.caPem, name);
    agents.push(agent);
    return { name, agent, token: (await clusters.createEnrollmentToken(admin, name)).token };
  };

  it('opens a real envelope into the Secret data with an independent decoder', async () => {
    const { name, agent, token } = await newAgent();
    // The agent's delivery key pair, made here with node:crypto (RSA-3072, as the spec says).
    const rsa = generateKeyPairSync('rsa', { modulusLength: 3072 });
    const privateKeyPem = rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const enrolled = await agent.enroll(
      { $case: 'bootstrapToken', value: token },
      { deliveryPublicKeyDer: rsa.publicKey.export({ type: 'spki', format: 'der' }) },
    );
    await t.app.get(PublicationsService).publish(admin, project, 'checkout', { clusters: [name] });

    const state = await eventually('the snapshot is built', async () => {
      const st = await agent.desiredState();
      return st.secrets.length > 0 ? st : undefined;
    });
    expect(state.secrets).toHaveLength(1);
    const s = state.secrets[0]!;
    expect(s).toMatchObject({ app: 'checkout', secret: 'checkout-db', version: 2, type: 'Opaque' });
    expect(s.target).toEqual({ namespace: 'shop', name: 'checkout-db' });

    // The SGK1 of enrollment and the ones in the desired state open to the same 32-byte key.
    const atEnrollment = fromTheSpec.openClusterKey(privateKeyPem, Buffer.from(enrolled.clusterKeyEnvelope));
    const keys = new Map(
      state.clusterKeyEnvelopes.map((e) => {
        const k = fromTheSpec.openClusterKey(privateKeyPem, Buffer.from(e));
        return [k.version, k.key] as const;
      }),
    );
    expect(keys.get(atEnrollment.version)?.equals(atEnrollment.key)).toBe(true);
    // The layout sizes the spec states: 40-byte wrapped data key, 12-byte IV, 16-byte tag.
    const envelope = Buffer.from(s.envelope);
    expect(envelope.readUInt16BE(8)).toBe(40);

    const ctx = { projectId: s.projectId, app: s.app, secret: s.secret, secretId: s.secretId, version: s.version };
    const payload = fromTheSpec.openSecret(envelope, keys, ctx);
    // Canonical: keys in code-point order, values standard base64.
    expect(payload.toString('utf8')).toBe(
      JSON.stringify({ v: 1, data: { PASSWORD: b64('r0tated'), USER: b64('app'), 'tls.p12': b64(binary) } }),
    );
    expect(fromTheSpec.secretData(payload)).toEqual({ PASSWORD: b64('r0tated'), USER: b64('app'), 'tls.p12': binary.toString('base64') });

    // The AAD is bound as the spec says: any other context does not open it.
    for (const wrong of [{ version: 1 }, { secret: 'checkout-api' }, { secretId: '00000000-0000-4000-8000-000000000000' }]) {
      expect(() => fromTheSpec.openSecret(envelope, keys, { ...ctx, ...wrong })).toThrow();
    }
  });

  it('refuses delivery keys outside 3072–8192 bits at enrollment, before anything is written', async () => {
    const rsa2048 = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'der' });
    // An 8200-bit modulus (no need for real primes: only its size is checked).
    const n = randomBytes(1025);
    n[0] = 0x01;
    const rsa8200 = createPublicKey({ key: { kty: 'RSA', n: n.toString('base64url'), e: 'AQAB' }, format: 'jwk' }).export({
      type: 'spki',
      format: 'der',
    });
    for (const der of [rsa2048, rsa8200]) {
      const { name, agent, token } = await newAgent();
      const failure = await agent.enroll({ $case: 'bootstrapToken', value: token }, { deliveryPublicKeyDer: der }).then(
        () => undefined,
        (err: unknown) => failureOf(err),
      );
      expect(failure).toMatchObject({ code: status.INVALID_ARGUMENT, errorCode: 'invalid_delivery_key' });
      expect((await clusters.get(name)).state).toBe('registered');
    }
  });
});
