/**
 * Many byte strings as one query parameter. node-postgres sends a `bytea[]` parameter as text:
 * every element hex-escaped in JavaScript and parsed back by PostgreSQL's array input, which at
 * 100,000 wrapped keys per publish is a large share of both processes' time. A single Buffer
 * parameter goes in binary as it is; SQL takes the pieces out with
 * `substring($blob FROM o FOR l)` over `unnest($offsets::int[], $lengths::int[])`.
 * The same holds for results, where the driver parses a `bytea[]` character by character:
 * `string_agg(x, ''::bytea ORDER BY …)` and `array_agg(octet_length(x) ORDER BY …)` come back
 * as one Buffer and a short int[] (unpackBytes).
 */
export interface PackedBytes {
  /** The pieces back to back. */
  blob: Buffer;
  /** Where each piece starts, 1-based (SQL's substring counts from 1). */
  offsets: number[];
  lengths: number[];
}

export function packBytes(pieces: readonly Buffer[]): PackedBytes {
  const offsets = new Array<number>(pieces.length);
  const lengths = new Array<number>(pieces.length);
  let at = 1;
  for (let i = 0; i < pieces.length; i++) {
    offsets[i] = at;
    lengths[i] = pieces[i]!.length;
    at += pieces[i]!.length;
  }
  return { blob: Buffer.concat(pieces), offsets, lengths };
}

/** The pieces of `string_agg(x, ''::bytea)` by their lengths (null, as an aggregate of no rows gives: none). */
export function unpackBytes(blob: Buffer | null, lengths: readonly number[] | null): Buffer[] {
  if (!blob || !lengths) return [];
  const pieces: Buffer[] = [];
  let at = 0;
  for (const length of lengths) {
    pieces.push(blob.subarray(at, at + length));
    at += length;
  }
  if (at !== blob.length) throw new Error(`packed bytes: lengths add up to ${at}, the blob holds ${blob.length}`);
  return pieces;
}
