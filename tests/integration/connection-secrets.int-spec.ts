import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { Actor } from '../../apps/control-plane/src/auth/policy.js';
import { ConnectionsService } from '../../apps/control-plane/src/connections/connections.service.js';
import { HsmService } from '../../apps/control-plane/src/hsm/hsm.service.js';
import { RootKeyRotationService } from '../../apps/control-plane/src/keys/root-key-rotation.service.js';
import { RootKeyService } from '../../apps/control-plane/src/keys/root-keys.service.js';
import { SealedValueService } from '../../apps/control-plane/src/keys/sealed-values.service.js';
import { ProjectsService } from '../../apps/control-plane/src/projects/projects.service.js';
import { startTestApp, type TestApp } from '../harness/app-context.js';

/**
 * A connection's admin password in key custody: sealed under the connection AAD into
 * sealed_values, opened for one call, never opened as (or from) a secret value, re-wrapped by a
 * root-key rotation and counted by a root key's destruction, gone with its connection.
 */
const admin = new Actor('00000000-0000-4000-8000-000000000001', 'test-admin', 'admin', null);
const PASSWORD = 'Admin-Canary-Password-7f3c';

let t: TestApp;
let db: pg.Client;
let connections: ConnectionsService;
let projectId: string;

const dto = (name: string, over: Record<string, unknown> = {}) => ({
  name,
  host: '127.0.0.1',
  database: 'orders',
  username: 'sigil_admin',
  adminPassword: PASSWORD,
  tlsMode: 'disable' as const,
  ...over,
});

async function sealedRows(): Promise<Array<{ id: string; v: number }>> {
  return (await db.query<{ id: string; v: number }>('SELECT id, root_key_version AS v FROM sealed_values ORDER BY id')).rows;
}

beforeAll(async () => {
  t = await startTestApp({ roles: ['http'] });
  db = new pg.Client({ connectionString: t.databaseUrl });
  await db.connect();
  connections = t.app.get(ConnectionsService);
  projectId = (await t.app.get(ProjectsService).create({ name: 'conn' })).id;
}, 60_000);

afterAll(async () => {
  await db?.end();
  await t?.dispose();
});

describe('connection secrets', () => {
  it('seals the admin password (no plaintext in the row), opens it for a call, and only under its own connection', async () => {
    const { connection } = await connections.create(admin, 'conn', dto('orders-db'));
    expect(connection.rolePrefix).toBe(`sigil_${connection.id.replace(/-/g, '').slice(0, 8)}_`);
    const { rows } = await db.query<{ c: Buffer }>('SELECT ciphertext AS c FROM sealed_values WHERE id = $1', [
      connection.adminPasswordSealedValueId,
    ]);
    expect(rows[0]!.c.includes(Buffer.from(PASSWORD))).toBe(false);

    const target = await connections.target(undefined, projectId, 'orders-db');
    expect(target).toMatchObject({
      id: connection.id,
      host: '127.0.0.1',
      port: 5432,
      tlsMode: 'disable',
      rolePrefix: connection.rolePrefix,
    });
    expect(target.adminPassword.toString()).toBe(PASSWORD);
    target.adminPassword.fill(0);
    expect((await connections.targetById(undefined, connection.id)).adminPassword.toString()).toBe(PASSWORD);

    // The same ciphertext under another connection's (or project's) AAD does not open.
    const [sealed] = (
      await db.query('SELECT root_key_version, wrapped_dek, iv, ciphertext FROM sealed_values WHERE id = $1', [
        connection.adminPasswordSealedValueId,
      ])
    ).rows as Array<{ root_key_version: number; wrapped_dek: Buffer; iv: Buffer; ciphertext: Buffer }>;
    const asSealed = {
      rootKeyVersion: sealed!.root_key_version,
      wrappedDek: sealed!.wrapped_dek,
      iv: sealed!.iv,
      ciphertext: sealed!.ciphertext,
    };
    const hsm = t.app.get(HsmService);
    await expect(hsm.openConnectionSecret({ projectId, connectionId: '00000000-0000-4000-8000-00000000beef' }, asSealed)).rejects.toThrow(
      /CKR_ENCRYPTED_DATA_INVALID|CKR_/,
    );
    await expect(hsm.openConnectionSecret({ projectId: 'not-a-uuid', connectionId: connection.id }, asSealed)).rejects.toThrow(/UUID/);
  });

  it('never opens a secret value as a connection password', async () => {
    const sealer = t.app.get(SealedValueService);
    const connectionId = '00000000-0000-4000-8000-0000000000c1';
    const [valueId] = await sealer.seal([
      {
        value: Buffer.from('a secret value'),
        context: { projectId, app: 'web', secret: 'db', secretId: connectionId, version: 1 },
      },
    ]);
    await expect(sealer.openConnectionSecret(undefined, { projectId, connectionId }, valueId!)).rejects.toThrow(/CKR_/);
  });

  it('replaces the password (the old sealed row goes), and deleting the connection takes its sealed row', async () => {
    const { connection } = await connections.create(admin, 'conn', dto('replace-db', { rolePrefix: 'sigil_replace_' }));
    const before = connection.adminPasswordSealedValueId;
    const r = await connections.update(admin, 'conn', 'replace-db', { adminPassword: 'Second-Password-1' }, connection.version);
    expect(r.connection.adminPasswordSealedValueId).not.toBe(before);
    expect(r.connection.adminPasswordSetAt.getTime()).toBeGreaterThanOrEqual(connection.adminPasswordSetAt.getTime());
    expect((await sealedRows()).map((s) => s.id)).not.toContain(before);
    expect((await connections.target(undefined, projectId, 'replace-db')).adminPassword.toString()).toBe('Second-Password-1');

    await expect(connections.create(admin, 'conn', dto('other-db', { rolePrefix: 'sigil_replace_' }))).rejects.toMatchObject({
      code: 'role_prefix_taken',
    });
    await expect(connections.create(admin, 'conn', dto('replace-db'))).rejects.toMatchObject({ code: 'connection_exists' });

    // A dynamic secret using it refuses the delete.
    let users: string[] = ['checkout/orders-creds'];
    connections.onUsageCheck((_tx, id) => Promise.resolve(id === connection.id ? users : []));
    await expect(connections.delete(admin, 'conn', 'replace-db', undefined)).rejects.toMatchObject({ code: 'connection_in_use' });
    users = [];
    const sealed = r.connection.adminPasswordSealedValueId;
    await connections.delete(admin, 'conn', 'replace-db', r.connection.version);
    expect((await sealedRows()).map((s) => s.id)).not.toContain(sealed);
    await expect(connections.target(undefined, projectId, 'replace-db')).rejects.toMatchObject({ code: 'connection_not_found' });
  });

  it('is re-wrapped by a root-key rotation, keeps the old root key from being destroyed until then, and opens after', async () => {
    await connections.create(admin, 'conn', dto('rotated-db'));
    const rotation = await t.app.get(RootKeyRotationService).start();
    const from = rotation.fromVersion;
    await expect(t.app.get(RootKeyService).destroy(from)).rejects.toMatchObject({ code: 'root_key_in_use' });
    await t.app.get(RootKeyRotationService).run(rotation.id);
    expect(new Set((await sealedRows()).map((s) => s.v))).toEqual(new Set([rotation.toVersion]));
    await t.app.get(RootKeyService).destroy(from);
    const target = await connections.target(undefined, projectId, 'rotated-db');
    expect(target.adminPassword.toString()).toBe(PASSWORD);
    expect((await connections.target(undefined, projectId, 'orders-db')).adminPassword.toString()).toBe(PASSWORD);
  }, 60_000);
});
