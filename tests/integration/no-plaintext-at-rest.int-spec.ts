import { randomBytes, randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { decodeSecretEnvelope, generateAgentKeyPair, openClusterKeyEnvelope, openSecretEnvelope, unwrapKeyKwp } from '@sigil/envelope';
import pg from 'pg';
import { ClusterKeyService } from '../../apps/control-plane/src/keys/cluster-keys.service.js';
import { EnvelopeService } from '../../apps/control-plane/src/keys/envelopes.service.js';
import { SealedValueService } from '../../apps/control-plane/src/keys/sealed-values.service.js';
import { registerCluster, startTestApp, type TestApp } from '../harness/app-context.js';
import { testEnv } from '../harness/test-env.js';

/** Every way a secret could be spelled in a dump: raw bytes, hex, base64. */
function spellings(secret: Buffer): Buffer[] {
  return [secret, Buffer.from(secret.toString('hex')), Buffer.from(secret.toString('base64')), Buffer.from(secret.toString('base64url'))];
}

/** Logical dump: every row of every table in the database, as JSON text (bytea as \x hex). */
async function logicalDump(url: string): Promise<Buffer> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows: tables } = await client.query<{ t: string }>("SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public'");
    const parts: string[] = [];
    for (const { t } of tables) {
      const { rows } = await client.query<{ j: string }>(`SELECT row_to_json(x)::text AS j FROM ${client.escapeIdentifier(t)} x`);
      parts.push(...rows.map((r) => r.j));
    }
    await client.query('CHECKPOINT'); // make sure the data files on disk hold the rows too
    return Buffer.from(parts.join('\n'));
  } finally {
    await client.end();
  }
}

/** Raw scan of every file of the PostgreSQL cluster: heap, indexes, WAL. */
async function rawFilesContain(needles: Buffer[]): Promise<boolean[]> {
  const found = needles.map(() => false);
  const walk = async (dir: string): Promise<void> => {
    // Other tests create and drop databases meanwhile: a directory may vanish under the walk.
    const entries = await readdir(dir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [];
      throw err;
    });
    for (const entry of entries) {
      const p = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(p);
      else if (entry.isFile()) {
        const data = await readFile(p).catch(() => Buffer.alloc(0));
        needles.forEach((n, i) => (found[i] ||= data.includes(n)));
      }
    }
  };
  await walk(path.join(testEnv().root, 'postgres', 'pgdata'));
  return found;
}

describe('no secret at rest in PostgreSQL', () => {
  let t: TestApp;
  const canary = Buffer.from(`canary-${randomBytes(16).toString('hex')}`);
  const ctx = { projectId: randomUUID(), app: 'web', secret: 'canary', secretId: randomUUID(), version: 1 };
  let dek: Buffer;
  let cdk: Buffer;

  beforeAll(async () => {
    t = await startTestApp();
    const agent = generateAgentKeyPair();
    const clusterId = await registerCluster(t.app);
    const issued = await t.app.get(ClusterKeyService).issue(clusterId, agent.publicKeyDer);
    cdk = openClusterKeyEnvelope(agent.privateKeyPem, issued.envelope).key;
    const [id] = await t.app.get(SealedValueService).seal([{ value: Buffer.from(canary), context: ctx }]);
    const envelope = (await t.app.get(EnvelopeService).forClusters([clusterId], [id!])).get(clusterId)![0]!;
    // What the agent learns is exactly what must never be found at the centre.
    expect(openSecretEnvelope(envelope, new Map([[1, cdk]]), ctx).equals(canary)).toBe(true);
    dek = unwrapKeyKwp(cdk, decodeSecretEnvelope(envelope).wrappedDek);
    expect(dek).toHaveLength(32);
  });
  afterAll(async () => {
    await t.dispose();
  });

  it('a logical dump of every table holds neither the value nor the unwrapped data key or delivery key', async () => {
    const dump = await logicalDump(t.databaseUrl);
    // The dump does hold the sealed value (ciphertext, wrapped keys): the search is over real rows.
    expect(dump.toString()).toMatch(/"wrapped_dek":"\\\\x[0-9a-f]{80}"/);
    expect(dump.toString()).toMatch(/"agent_envelope":"\\\\x[0-9a-f]+"/);
    for (const secret of [canary, dek, cdk]) {
      for (const s of spellings(secret)) expect(dump.includes(s)).toBe(false);
    }
  });

  it("the cluster's data files and WAL hold none of them either (and the scan does find a known marker)", async () => {
    const marker = Buffer.from(`marker-${randomBytes(12).toString('hex')}`);
    const client = new pg.Client({ connectionString: t.databaseUrl });
    await client.connect();
    await client.query("INSERT INTO api_tokens (name, role, token_hash) VALUES ($1, 'viewer', $2)", [marker.toString(), randomBytes(32)]);
    await client.query('CHECKPOINT');
    await client.end();
    const [markerFound, ...secrets] = await rawFilesContain([marker, ...[canary, dek, cdk].flatMap(spellings)]);
    expect(markerFound).toBe(true);
    expect(secrets.every((f) => !f)).toBe(true);
  });
});
