import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { DataSource } from 'typeorm';
import { ApiTokenEntity } from './api-token.entity.js';

export const ADMIN_TOKEN_FILE = 'admin-token';
const LOCK_KEY = 0x5161_0001; // pg advisory lock: one replica bootstraps at a time

export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

export function generateToken(): string {
  return `sgl_${randomBytes(32).toString('base64url')}`;
}

export type BootstrapOutcome = { kind: 'existing' } | { kind: 'from-environment' } | { kind: 'generated'; file: string };

/**
 * Makes sure an admin can get in on a fresh install. With SIGIL_BOOTSTRAP_ADMIN_TOKEN set,
 * that token is registered (idempotently). Otherwise, if no admin token exists yet, one is
 * generated and written to `<data dir>/admin-token` with mode 0600 — never logged.
 */
export async function bootstrapAdminToken(ds: DataSource, dataDir: string, fromEnv: string | undefined): Promise<BootstrapOutcome> {
  return ds.transaction(async (em) => {
    await em.query('SELECT pg_advisory_xact_lock($1)', [LOCK_KEY]);
    const repo = em.getRepository(ApiTokenEntity);
    if (fromEnv !== undefined) {
      const tokenHash = hashToken(fromEnv);
      if (!(await repo.existsBy({ tokenHash }))) {
        await repo.insert({ name: 'bootstrap-admin', role: 'admin', projectId: null, tokenHash, revokedAt: null });
      }
      return { kind: 'from-environment' };
    }
    if (await repo.existsBy({ role: 'admin' })) return { kind: 'existing' };
    const token = generateToken();
    const file = path.join(dataDir, ADMIN_TOKEN_FILE);
    await writeFile(file, `${token}\n`, { mode: 0o600 });
    await repo.insert({ name: 'bootstrap-admin', role: 'admin', projectId: null, tokenHash: hashToken(token), revokedAt: null });
    return { kind: 'generated', file };
  });
}
