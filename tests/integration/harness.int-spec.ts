import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from '@jest/globals';
import { Queue, QueueEvents, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { acquireLibrary, findSlotByLabel, pkcs11js, releaseLibrary } from '../../apps/control-plane/src/hsm/pkcs11-library.js';
import {
  createNamespace,
  createTestDatabase,
  kubeConfig,
  mintServiceAccountToken,
  testEnv,
  testHsmPin,
  uniqueName,
} from '../harness/test-env.js';

// Proof that each real service of the harness works, through the same client libraries the product uses.

describe('test harness: PostgreSQL', () => {
  it('gives each test its own migrated database', async () => {
    const db = await createTestDatabase();
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ version: string; migrations: string }>(
        "SELECT current_setting('server_version_num') AS version, (SELECT count(*) FROM schema_migrations)::text AS migrations",
      );
      expect(Number(rows[0]!.version)).toBeGreaterThanOrEqual(180000);
      expect(Number(rows[0]!.migrations)).toBeGreaterThanOrEqual(1);
      await client.query("INSERT INTO api_tokens (name, role, token_hash) VALUES ('t', 'viewer', '\\x00')");
      const { rows: count } = await client.query<{ n: string }>('SELECT count(*)::text AS n FROM api_tokens');
      expect(count[0]!.n).toBe('1');
    } finally {
      await client.end();
      await db.drop();
    }
  });
});

describe('test harness: Redis', () => {
  const connection = new Redis(testEnv().redis.url, { maxRetriesPerRequest: null });
  afterAll(async () => {
    await connection.quit();
  });

  it('runs a BullMQ job round trip', async () => {
    const prefix = uniqueName('bull');
    const queue = new Queue('harness', { connection, prefix });
    // Given options rather than a client, BullMQ opens (and closes) its own blocking connections.
    const options = { url: testEnv().redis.url, maxRetriesPerRequest: null };
    const events = new QueueEvents('harness', { connection: options, prefix });
    const worker = new Worker('harness', (job) => Promise.resolve({ doubled: (job.data as { n: number }).n * 2 }), {
      connection: options,
      prefix,
    });
    try {
      await events.waitUntilReady();
      const job = await queue.add('double', { n: 21 });
      await expect(job.waitUntilFinished(events, 10_000)).resolves.toEqual({ doubled: 42 });
      expect(await connection.keys(`${prefix}:*`)).not.toHaveLength(0);
    } finally {
      await worker.close();
      await events.close();
      await queue.obliterate({ force: true });
      await queue.close();
    }
  });
});

describe('test harness: SoftHSM through pkcs11js', () => {
  it('generates a non-extractable AES key inside the token and encrypts with it', () => {
    const env = testEnv();
    const p = acquireLibrary(env.hsm.module);
    const session = p.C_OpenSession(findSlotByLabel(p, env.hsm.tokenLabel)!, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    try {
      p.C_Login(session, pkcs11js.CKU_USER, testHsmPin());
      const key = p.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
        { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
        { type: pkcs11js.CKA_TOKEN, value: false },
        { type: pkcs11js.CKA_SENSITIVE, value: true },
        { type: pkcs11js.CKA_EXTRACTABLE, value: false },
        { type: pkcs11js.CKA_ENCRYPT, value: true },
        { type: pkcs11js.CKA_LABEL, value: uniqueName('harness') },
      ]);
      const attrs = p.C_GetAttributeValue(session, key, [{ type: pkcs11js.CKA_SENSITIVE }, { type: pkcs11js.CKA_EXTRACTABLE }]);
      p.C_EncryptInit(
        session,
        {
          mechanism: pkcs11js.CKM_AES_GCM,
          parameter: { type: pkcs11js.CK_PARAMS_AES_GCM, iv: randomBytes(12), ivBits: 96, tagBits: 128 } as pkcs11js.AesGCM,
        },
        key,
      );
      const ciphertext = p.C_Encrypt(session, Buffer.from('hello'), Buffer.alloc(64));
      p.C_DestroyObject(session, key);
      expect(ciphertext.length).toBe(5 + 16); // plaintext + GCM tag
      expect(attrs[0]!.value[0]).toBe(1);
      expect(attrs[1]!.value[0]).toBe(0);
    } finally {
      p.C_CloseSession(session);
      releaseLibrary(env.hsm.module);
    }
  });
});

describe('test harness: kube-apiserver with etcd', () => {
  it('creates a Secret and reads it back with @kubernetes/client-node', async () => {
    const k8s = await import('@kubernetes/client-node');
    const core = (await kubeConfig()).makeApiClient(k8s.CoreV1Api);
    const namespace = await createNamespace('harness');
    await core.createNamespacedSecret({
      namespace,
      body: { metadata: { name: 'demo' }, type: 'Opaque', data: { KEY: Buffer.from('v1').toString('base64') } },
    });
    const read = await core.readNamespacedSecret({ namespace, name: 'demo' });
    expect(Buffer.from(read.data!.KEY!, 'base64').toString()).toBe('v1');
  });

  it('mints service-account tokens for an audience, verifiable against the issuer JWKS', async () => {
    const namespace = await createNamespace('sa');
    const token = await mintServiceAccountToken(namespace, 'agent', ['sigil']);
    const [, payload] = token.split('.');
    const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString()) as { iss: string; aud: string[]; sub: string };
    expect(claims.iss).toBe(testEnv().kube.issuer);
    expect(claims.aud).toEqual(['sigil']);
    expect(claims.sub).toBe(`system:serviceaccount:${namespace}:agent`);
  });
});
