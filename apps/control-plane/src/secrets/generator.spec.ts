import { randomBytes } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import {
  alphabetProblem,
  base64Into,
  DEFAULT_ALPHABET,
  entropyBits,
  generateSpecProblem,
  generateValues,
  hexInto,
  normalizeSpec,
  randomString,
  type RandomSource,
} from './generator.js';

/** A random source that plays back fixed bytes and records what it handed out (to check zeroing). */
function scripted(bytes: number[]): { random: RandomSource; handed: Buffer[]; asked: number[] } {
  let pos = 0;
  const handed: Buffer[] = [];
  const asked: number[] = [];
  const random: RandomSource = (n) => {
    asked.push(n);
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = bytes[pos++ % bytes.length]!;
    handed.push(b);
    return Promise.resolve(b);
  };
  return { random, handed, asked };
}

const nodeRandom: RandomSource = (n) => Promise.resolve(randomBytes(n));

describe('randomString (rejection sampling)', () => {
  it('throws away bytes at or above 256 − (256 mod n) and maps the rest by b mod n', async () => {
    // n = 3: 256 mod 3 = 1, so 255 is rejected and 0..254 map to b mod 3.
    const { random } = scripted([255, 0, 255, 255, 1, 2, 254, 3]);
    expect((await randomString('abc', 5, random)).toString()).toBe('abcca'); // 0→a 1→b 2→c 254→c 3→a
  });

  it('with n = 62 rejects 248..255 (a plain modulo would map them onto the first 8 characters)', async () => {
    const limitBytes = [248, 249, 250, 251, 252, 253, 254, 255];
    const { random } = scripted([...limitBytes, 61, ...limitBytes, 0, 62]);
    expect((await randomString(DEFAULT_ALPHABET, 3, random)).toString()).toBe('9AA');
  });

  it('accepts every byte when n divides 256', async () => {
    const { random } = scripted([255, 254, 0, 1]);
    expect((await randomString('0123456789abcdef', 4, random)).toString()).toBe('fe01');
  });

  it('asks again when a batch had too many rejections, and zeroes every batch it used', async () => {
    const { random, handed, asked } = scripted([255]); // n = 3: always rejected …
    let calls = 0;
    const flaky: RandomSource = async (n) => (++calls > 2 ? Buffer.alloc(n, 1) : random(n)); // … until the third call
    expect((await randomString('abc', 10, flaky)).toString()).toBe('bbbbbbbbbb');
    expect(asked.length).toBe(2);
    for (const b of handed) expect(b.every((x) => x === 0)).toBe(true);
  });

  it('is uniform: every character of a 62-letter alphabet within 5 % of its expectation over 620,000 draws', async () => {
    const s = await randomString(DEFAULT_ALPHABET, 620_000, nodeRandom);
    const counts = new Map<number, number>();
    for (const c of s) counts.set(c, (counts.get(c) ?? 0) + 1);
    expect(counts.size).toBe(62);
    for (const n of counts.values()) expect(Math.abs(n - 10_000)).toBeLessThan(500);
  });

  it('a biased modulo would fail that test: the first 8 letters would be drawn 5/4 as often', () => {
    const counts = new Array<number>(62).fill(0);
    for (let b = 0; b < 256; b++) counts[b % 62]!++;
    expect(counts[0]! / counts[61]!).toBe(5 / 4);
  });
});

describe('hexInto, base64Into', () => {
  it('match Node encodings for every length around the padding cases', () => {
    for (let n = 0; n < 40; n++) {
      const b = randomBytes(n);
      expect(hexInto(b).toString()).toBe(b.toString('hex'));
      expect(base64Into(b).toString()).toBe(b.toString('base64'));
    }
  });
});

describe('generateValues', () => {
  it('makes each key of the spec: password over its alphabet, hex of N bytes, base64 of N bytes; zeroes the random bytes', async () => {
    const handed: Buffer[] = [];
    const random: RandomSource = (n) => {
      const b = randomBytes(n);
      handed.push(b);
      return Promise.resolve(b);
    };
    const spec = normalizeSpec([
      { key: 'PASSWORD', kind: 'password', length: 32 },
      { key: 'PIN', kind: 'password', length: 40, alphabet: '0123456789' },
      { key: 'API_KEY', kind: 'hex', length: 16 },
      { key: 'SECRET_KEY', kind: 'bytes-base64', length: 32 },
    ]);
    const values = await generateValues(spec, random);
    expect([...values.keys()]).toEqual(['API_KEY', 'PASSWORD', 'PIN', 'SECRET_KEY']);
    expect(values.get('PASSWORD')!.toString()).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(values.get('PIN')!.toString()).toMatch(/^[0-9]{40}$/);
    expect(values.get('API_KEY')!.toString()).toMatch(/^[0-9a-f]{32}$/);
    expect(Buffer.from(values.get('SECRET_KEY')!.toString(), 'base64')).toHaveLength(32);
    for (const b of handed) expect(b.every((x) => x === 0)).toBe(true);
  });

  it('zeroes what it made so far when the HSM fails half-way', async () => {
    const made: Buffer[] = [];
    let calls = 0;
    const random: RandomSource = (n) => (++calls > 1 ? Promise.reject(new Error('CKR_DEVICE_ERROR')) : Promise.resolve(randomBytes(n)));
    const spy: RandomSource = async (n) => {
      const b = await random(n);
      made.push(b);
      return b;
    };
    await expect(
      generateValues(
        normalizeSpec([
          { key: 'A', kind: 'hex', length: 16 },
          { key: 'B', kind: 'hex', length: 16 },
        ]),
        spy,
      ),
    ).rejects.toThrow('CKR_DEVICE_ERROR');
    expect(made).toHaveLength(1);
    expect(made[0]!.every((x) => x === 0)).toBe(true);
  });
});

describe('generateSpecProblem', () => {
  const key = (over: Record<string, unknown> = {}) => ({ key: 'PASSWORD', kind: 'password', length: 32, ...over });

  it('accepts the documented shapes', () => {
    expect(generateSpecProblem({ keys: [key()] })).toBeUndefined();
    expect(
      generateSpecProblem({
        keys: [key(), key({ key: 'API_KEY', kind: 'hex', length: 32 }), key({ key: 'K', kind: 'bytes-base64', length: 8 })],
        rotateEveryDays: 30,
      }),
    ).toBeUndefined();
    expect(generateSpecProblem({ keys: [key({ alphabet: '!#$%&()*+,-./:;<=>?@[]^_{|}~abcdefghij' })] })).toBeUndefined();
  });

  it.each([
    ['not an object', 'x', 'must be an object'],
    ['no keys', {}, 'keys must be a non-empty array'],
    ['empty keys', { keys: [] }, 'keys must be a non-empty array'],
    ['an unknown field', { keys: [key()], rotate: 3 }, 'unknown field "rotate"'],
    ['an unknown key field', { keys: [key({ value: 'x' })] }, 'keys[0] has an unknown field "value"'],
    ['a bad key name', { keys: [key({ key: 'a b' })] }, 'keys[0].key'],
    ['a repeated key', { keys: [key(), key()] }, 'appears twice'],
    ['an unknown kind', { keys: [key({ kind: 'uuid' })] }, 'kind must be one of password, hex, bytes-base64'],
    ['a fractional length', { keys: [key({ length: 12.5 })] }, 'length must be an integer from 8 to 1024'],
    ['too short', { keys: [key({ length: 7 })] }, 'length must be an integer from 8 to 1024'],
    ['too long', { keys: [key({ kind: 'hex', length: 1025 })] }, 'length must be an integer from 8 to 1024'],
    ['an alphabet for hex', { keys: [key({ kind: 'hex', alphabet: 'ab' })] }, 'alphabet applies to kind password only'],
    ['a repeated alphabet letter', { keys: [key({ alphabet: 'aab' })] }, 'must not repeat a character'],
    ['a space in the alphabet', { keys: [key({ alphabet: 'ab ' })] }, 'printable ASCII'],
    ['a non-ASCII alphabet', { keys: [key({ alphabet: 'abé' })] }, 'printable ASCII'],
    ['too little entropy', { keys: [key({ length: 12, alphabet: '0123456789' })] }, 'bits of entropy'],
    ['rotateEveryDays 0', { keys: [key()], rotateEveryDays: 0 }, 'rotateEveryDays must be an integer from 1 to 3650'],
    ['rotateEveryDays null', { keys: [key()], rotateEveryDays: null }, 'rotateEveryDays must be an integer'],
    ['rotateEveryDays a string', { keys: [key()], rotateEveryDays: '30' }, 'rotateEveryDays must be an integer'],
  ])('refuses %s', (_what, spec, problem) => {
    expect(generateSpecProblem(spec)).toContain(problem);
  });

  it('alphabetProblem and entropyBits', () => {
    expect(alphabetProblem('ab')).toBeUndefined();
    expect(alphabetProblem('a')).toContain('at least 2');
    expect(entropyBits({ key: 'K', kind: 'password', length: 20, alphabet: '0123456789' })).toBeCloseTo(66.44, 1);
    expect(entropyBits({ key: 'K', kind: 'hex', length: 8 })).toBe(64);
  });

  it('normalizeSpec sorts keys and spells out the default alphabet (and only for passwords)', () => {
    expect(
      normalizeSpec([
        { key: 'Z', kind: 'hex', length: 8 },
        { key: 'A', kind: 'password', length: 16 },
      ]),
    ).toEqual({
      keys: [
        { key: 'A', kind: 'password', length: 16, alphabet: DEFAULT_ALPHABET },
        { key: 'Z', kind: 'hex', length: 8 },
      ],
    });
  });
});
