import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { decodeSecretEnvelope, decodeSecretPayload, openSecretEnvelope, unwrapKeyKwp } from '@sigil/envelope';
import pg from 'pg';
import { Actor } from '../../apps/control-plane/src/auth/policy.js';
import { ClustersService } from '../../apps/control-plane/src/clusters/clusters.service.js';
import { ConnectionsService } from '../../apps/control-plane/src/connections/connections.service.js';
import { PublicationsService } from '../../apps/control-plane/src/publications/publications.service.js';
import { SecretsService } from '../../apps/control-plane/src/secrets/secrets.service.js';
import { agentEndpoint, projectWithApp, startTestApp, type TestApp } from '../harness/app-context.js';
import { eventually } from '../harness/eventually.js';
import { deliveryKeys, enrollAgent, SyncSession, type EnrolledAgent } from '../harness/sync-session.js';
import { testEnv, uniqueName } from '../harness/test-env.js';

const admin = new Actor('test', 'test-admin', 'admin', null);

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
  /** A database connection's admin password (dynamic secrets, docs/crypto.md "Database connections"). */
  const adminPassword = Buffer.from(`admin-${randomBytes(16).toString('hex')}`);
  let dek: Buffer;
  let cdk: Buffer;
  /** Values the HSM generated (a generated secret, issue 20), as the agent opened them. */
  let generated: Buffer[] = [];
  let agent: EnrolledAgent | undefined;

  beforeAll(async () => {
    t = await startTestApp();
    // The way production takes a value in and out: written through SecretsService, published,
    // built by the delivery job for an enrolled cluster, and read off its Sync stream.
    const project = uniqueName('p');
    await projectWithApp(t.app, admin, { project, app: 'web', namespace: 'web' }, { canary: { VALUE: canary.toString() } });
    await t.app.get(SecretsService).create(admin, project, 'web', {
      name: 'generated',
      generate: {
        keys: [
          { key: 'PASSWORD', kind: 'password', length: 40 },
          { key: 'KEY', kind: 'hex', length: 32 },
          { key: 'B64', kind: 'bytes-base64', length: 32 },
        ],
        rotateEveryDays: 30,
      },
    });
    await t.app.get(ConnectionsService).create(admin, project, {
      name: 'orders-db',
      host: 'db.internal',
      database: 'orders',
      username: 'sigil_admin',
      adminPassword: adminPassword.toString(),
    });
    const clusters = t.app.get(ClustersService);
    const name = uniqueName('c');
    await clusters.register(name, {});
    await t.app.get(PublicationsService).publish(admin, project, 'web', { clusters: [name] });
    const { address, caPem } = agentEndpoint(t.app);
    const enrolled = (agent = await enrollAgent(address, caPem, name, (await clusters.createEnrollmentToken(admin, name)).token));
    const state = await eventually(
      'the canary delivered',
      async () => {
        const s = new SyncSession(enrolled.client, { appliedGeneration: 0n });
        try {
          const st = await s.state(1);
          return st.secrets.length > 1 ? st : undefined;
        } finally {
          s.cancel();
        }
      },
      30_000,
      200,
    );
    const keys = deliveryKeys(enrolled, state.keyEnvelopes);
    cdk = keys.get(1)!;
    const delivered = state.secrets.find((x) => x.secret === 'canary')!;
    const gen = state.secrets.find((x) => x.secret === 'generated')!;
    const values = decodeSecretPayload(openSecretEnvelope(gen.envelope, keys, gen));
    expect(values.get('PASSWORD')!.toString()).toMatch(/^[A-Za-z0-9]{40}$/);
    expect(values.get('KEY')!.toString()).toMatch(/^[0-9a-f]{64}$/);
    // Each random spelled raw too: the hex key's 32 bytes, the base64 key's 32 bytes.
    generated = [
      ...values.values(),
      Buffer.from(values.get('KEY')!.toString(), 'hex'),
      Buffer.from(values.get('B64')!.toString(), 'base64'),
    ];
    // What the agent learns is exactly what must never be found at the centre.
    expect(
      decodeSecretPayload(openSecretEnvelope(delivered.envelope, keys, delivered))
        .get('VALUE')!
        .equals(canary),
    ).toBe(true);
    dek = unwrapKeyKwp(cdk, decodeSecretEnvelope(delivered.envelope).wrappedDek);
    expect(dek).toHaveLength(32);
  }, 60_000);
  afterAll(async () => {
    agent?.close();
    await t?.dispose();
  });

  it('a logical dump of every table holds neither the values (typed and HSM-generated), a connection’s admin password, nor the unwrapped data key or delivery key', async () => {
    const dump = await logicalDump(t.databaseUrl);
    // The dump does hold the sealed value (ciphertext, wrapped keys): the search is over real rows.
    expect(dump.toString()).toMatch(/"wrapped_dek":"\\\\x[0-9a-f]{80}"/);
    expect(dump.toString()).toMatch(/"agent_envelope":"\\\\x[0-9a-f]+"/);
    expect(dump.toString()).toContain('"role_prefix":"sigil_'); // the connection's row is in the dump
    for (const secret of [canary, dek, cdk, adminPassword, ...generated]) {
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
    const [markerFound, ...secrets] = await rawFilesContain([
      marker,
      ...[canary, dek, cdk, adminPassword, ...generated].flatMap(spellings),
    ]);
    expect(markerFound).toBe(true);
    expect(secrets.every((f) => !f)).toBe(true);
  });
});
