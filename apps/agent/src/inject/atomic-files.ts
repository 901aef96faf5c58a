import { chmod, lstat, mkdir, readdir, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** Secret names and keys become path parts: the rules Kubernetes has for Secret keys, minus `.` and `..`. */
const PART = /^[-._a-zA-Z0-9]{1,253}$/;
const DATA = '..data';

export function safePart(name: string): boolean {
  return PART.test(name) && name !== '.' && name !== '..' && !name.startsWith('..');
}

/**
 * Writes a set of files so that readers see the old set or the new one, never a mix — the
 * kubelet's own scheme for Secret volumes: the files live in a fresh `..<stamp>` directory,
 * `..data` points at it, and `<secret>` at `..data/<secret>`; one rename switches them all.
 * Files are mode 0400, directories 0500, owned by whoever runs this (the pod's user).
 */
export async function writeAtomically(dir: string, files: Map<string, Map<string, Buffer>>): Promise<void> {
  for (const [secret, keys] of files) {
    if (!safePart(secret)) throw new Error(`unusable secret name for a file: ${JSON.stringify(secret)}`);
    for (const k of keys.keys()) if (!safePart(k)) throw new Error(`unusable key for a file name in ${secret}: ${JSON.stringify(k)}`);
  }
  const stamp = `..${new Date().toISOString().replace(/[:.]/g, '-')}.${process.pid}.${Math.random().toString(36).slice(2, 8)}`;
  const fresh = path.join(dir, stamp);
  await mkdir(fresh, { mode: 0o700 });
  for (const [secret, keys] of files) {
    const d = path.join(fresh, secret);
    await mkdir(d, { mode: 0o700 });
    for (const [k, v] of keys) await writeFile(path.join(d, k), v, { mode: 0o400 });
    await chmod(d, 0o500);
  }
  await chmod(fresh, 0o500);
  const previous = await readlink(path.join(dir, DATA)).catch(() => undefined);
  await rm(path.join(dir, `${DATA}_tmp`), { force: true });
  await symlink(stamp, path.join(dir, `${DATA}_tmp`));
  await rename(path.join(dir, `${DATA}_tmp`), path.join(dir, DATA));
  const wanted = new Set(files.keys());
  for (const secret of wanted) {
    const link = path.join(dir, secret);
    if ((await readlink(link).catch(() => undefined)) !== path.join(DATA, secret)) {
      await rm(link, { recursive: true, force: true });
      await symlink(path.join(DATA, secret), link);
    }
  }
  for (const entry of await readdir(dir)) {
    if (entry.startsWith('..') || wanted.has(entry)) continue;
    await rm(path.join(dir, entry), { recursive: true, force: true }); // a secret no longer delivered
  }
  if (previous && previous !== stamp) await removeTree(path.join(dir, previous));
}

/** Removes every file this writer made (the app was unpublished or the pod is no consumer). */
export async function removeAll(dir: string): Promise<void> {
  for (const entry of await readdir(dir).catch(() => [] as string[])) await removeTree(path.join(dir, entry));
}

async function removeTree(p: string): Promise<void> {
  // Read-only directories first need their write bit back (we own them); links are just unlinked.
  const isDir = (await lstat(p).catch(() => undefined))?.isDirectory() ?? false;
  const entries = isDir ? await readdir(p, { withFileTypes: true }).catch(() => undefined) : undefined;
  if (entries) {
    await chmod(p, 0o700).catch(() => undefined);
    for (const e of entries) if (e.isDirectory()) await removeTree(path.join(p, e.name));
  }
  await rm(p, { recursive: true, force: true });
}
