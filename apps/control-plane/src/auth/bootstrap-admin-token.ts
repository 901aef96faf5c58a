import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ApiTokenRepository } from './api-token.repository.js';

export const ADMIN_TOKEN_FILE = 'admin-token';

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
 * generated and written to `<data dir>/admin-token` with mode 0600 — never logged. Replicas
 * starting together take turns (the repository's bootstrap lock).
 */
export async function bootstrapAdminToken(
  tokens: ApiTokenRepository,
  dataDir: string,
  fromEnv: string | undefined,
): Promise<BootstrapOutcome> {
  return tokens.bootstrapTransaction(async (tx) => {
    const admin = { name: 'bootstrap-admin', role: 'admin' as const, projectId: null };
    if (fromEnv !== undefined) {
      const tokenHash = hashToken(fromEnv);
      if (!(await tokens.existsByHash(tokenHash, tx))) await tokens.insert({ ...admin, tokenHash }, tx);
      return { kind: 'from-environment' };
    }
    if (await tokens.adminExists(tx)) return { kind: 'existing' };
    const token = generateToken();
    const file = path.join(dataDir, ADMIN_TOKEN_FILE);
    await writeFile(file, `${token}\n`, { mode: 0o600 });
    await tokens.insert({ ...admin, tokenHash: hashToken(token) }, tx);
    return { kind: 'generated', file };
  });
}
