import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * Reads a generated credential (database password, Redis password, SoftHSM PIN) from
 * `file`, creating it with mode 0600 on first use so it survives restarts.
 */
export async function readOrCreateSecretFile(file: string, bytes = 24): Promise<string> {
  try {
    const existing = (await readFile(file, 'utf8')).trim();
    if (existing.length > 0) return existing;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const value = randomBytes(bytes).toString('base64url');
  await writeFile(file, `${value}\n`, { mode: 0o600, flag: 'wx' });
  return value;
}
