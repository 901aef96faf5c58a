import { mkdtemp, readFile, readdir, readlink, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { removeAll, writeAtomically } from './atomic-files.js';

const set = (entries: Record<string, Record<string, string>>) =>
  new Map(Object.entries(entries).map(([s, keys]) => [s, new Map(Object.entries(keys).map(([k, v]) => [k, Buffer.from(v)]))]));

describe('writeAtomically', () => {
  it('switches the whole set at once, removes what is gone, and leaves one generation on disk', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'sigil-files-'));
    await writeAtomically(dir, set({ db: { PASSWORD: 'one' }, api: { KEY: 'k1' } }));
    expect(await readFile(path.join(dir, 'db', 'PASSWORD'), 'utf8')).toBe('one');
    expect((await stat(path.join(dir, 'db', 'PASSWORD'))).mode & 0o777).toBe(0o400);
    const first = await readlink(path.join(dir, '..data'));
    await writeAtomically(dir, set({ db: { PASSWORD: 'two' } }));
    expect(await readFile(path.join(dir, 'db', 'PASSWORD'), 'utf8')).toBe('two');
    expect(await readlink(path.join(dir, '..data'))).not.toBe(first);
    const entries = (await readdir(dir)).sort();
    expect(entries.filter((e) => !e.startsWith('..'))).toEqual(['db']);
    expect(entries.filter((e) => e.startsWith('..') && e !== '..data')).toHaveLength(1);
    await removeAll(dir);
    expect(await readdir(dir)).toEqual([]);
  });

  it('refuses names that would leave the directory', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'sigil-files-'));
    await writeFile(path.join(dir, 'keep'), 'x');
    await expect(writeAtomically(dir, set({ '..': { a: 'b' } }))).rejects.toThrow('unusable secret name');
    await expect(writeAtomically(dir, set({ db: { '../x': 'b' } }))).rejects.toThrow('unusable key');
    expect(await readdir(dir)).toEqual(['keep']);
  });
});
