import { describe, expect, it } from '@jest/globals';
import { packBytes, unpackBytes } from './packed-bytes.js';

describe('packBytes', () => {
  it('lays the pieces back to back with 1-based offsets, so substring(blob FROM o FOR l) gives each back', () => {
    const pieces = [Buffer.from('ab'), Buffer.alloc(0), Buffer.from([0, 255, 7])];
    const p = packBytes(pieces);
    expect(p.offsets).toEqual([1, 3, 3]);
    expect(p.lengths).toEqual([2, 0, 3]);
    const back = p.offsets.map((o, i) => p.blob.subarray(o - 1, o - 1 + p.lengths[i]!));
    expect(back).toEqual(pieces);
  });

  it('packs nothing into an empty blob', () => {
    expect(packBytes([])).toEqual({ blob: Buffer.alloc(0), offsets: [], lengths: [] });
  });
});

describe('unpackBytes', () => {
  it('splits a string_agg of bytea by the lengths array_agg gave', () => {
    const pieces = [Buffer.from([1, 2, 3]), Buffer.from([]), Buffer.from([9])];
    expect(unpackBytes(Buffer.concat(pieces), [3, 0, 1])).toEqual(pieces);
  });

  it('gives nothing for the NULLs an aggregate of no rows returns', () => {
    expect(unpackBytes(null, null)).toEqual([]);
  });

  it('refuses lengths that do not cover the blob exactly', () => {
    expect(() => unpackBytes(Buffer.from([1, 2]), [1])).toThrow(/lengths add up to 1, the blob holds 2/);
  });
});
