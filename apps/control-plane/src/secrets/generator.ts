import { secretKeyProblem } from '../common/kubernetes-names.js';

/**
 * Generated secrets (docs/generated-secrets.md): what a key's value is made of, validated here
 * and stored (without any value) on the secret row; the bytes come from the HSM's random
 * generator, turned into characters by rejection sampling (no modulo bias).
 */

export const GENERATED_KINDS = ['password', 'hex', 'bytes-base64'] as const;
export type GeneratedKind = (typeof GENERATED_KINDS)[number];

/** Letters and digits: safe in URLs, shells, YAML and connection strings. */
export const DEFAULT_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
export const MAX_GENERATED_KEYS = 64;
/** password: characters; hex and bytes-base64: random bytes (hex spells each as 2 characters, base64 as 4 per 3). */
export const LENGTH_BOUNDS: Record<GeneratedKind, { min: number; max: number }> = {
  password: { min: 8, max: 1024 },
  hex: { min: 8, max: 1024 },
  'bytes-base64': { min: 8, max: 1024 },
};
/** A generated value carries at least this much entropy (a short password over a small alphabet is refused). */
export const MIN_ENTROPY_BITS = 64;
export const MAX_ROTATE_EVERY_DAYS = 3650;

export interface GeneratedKeySpec {
  key: string;
  kind: GeneratedKind;
  length: number;
  /** password only; stored resolved (the default spelled out), so a later default never changes a secret. */
  alphabet?: string;
}

/** What the secret row keeps: the recipe, never a value. */
export interface GeneratorSpec {
  keys: GeneratedKeySpec[];
}

const KEY_FIELDS = new Set(['key', 'kind', 'length', 'alphabet']);
const SPEC_FIELDS = new Set(['keys', 'rotateEveryDays']);
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Why `alphabet` is not usable, if it is not: 2 to 94 distinct printable ASCII characters, no space. */
export function alphabetProblem(alphabet: unknown): string | undefined {
  if (typeof alphabet !== 'string') return 'must be a string';
  if (!/^[\x21-\x7e]*$/.test(alphabet)) return 'must be printable ASCII characters (no space)';
  if (alphabet.length < 2) return 'must have at least 2 characters';
  if (new Set(alphabet).size !== alphabet.length) return 'must not repeat a character';
  return undefined;
}

/** Bits of entropy of one generated value. */
export function entropyBits(spec: GeneratedKeySpec): number {
  if (spec.kind === 'password') return spec.length * Math.log2((spec.alphabet ?? DEFAULT_ALPHABET).length);
  return spec.length * 8;
}

/**
 * Why the request's `generate` object is refused, if it is (the first problem, naming the field;
 * a DTO rule, so it answers 400 `validation_failed` like every other shape error).
 */
export function generateSpecProblem(v: unknown): string | undefined {
  if (!isObject(v)) return 'must be an object with keys (and optionally rotateEveryDays)';
  for (const f of Object.keys(v)) if (!SPEC_FIELDS.has(f)) return `has an unknown field ${JSON.stringify(f.slice(0, 40))}`;
  if (v.rotateEveryDays !== undefined) {
    const p = rotateEveryDaysProblem(v.rotateEveryDays);
    if (p) return `rotateEveryDays ${p}`;
  }
  const keys = v.keys;
  if (!Array.isArray(keys) || keys.length === 0) return 'keys must be a non-empty array';
  if (keys.length > MAX_GENERATED_KEYS) return `keys may have at most ${MAX_GENERATED_KEYS} entries`;
  const seen = new Set<string>();
  for (const [i, k] of keys.entries()) {
    const at = `keys[${i}]`;
    if (!isObject(k)) return `${at} must be an object with key, kind and length`;
    for (const f of Object.keys(k)) if (!KEY_FIELDS.has(f)) return `${at} has an unknown field ${JSON.stringify(f.slice(0, 40))}`;
    if (typeof k.key !== 'string') return `${at}.key must be a string`;
    const kp = secretKeyProblem(k.key);
    if (kp) return `${at}.key ${kp}`;
    if (seen.has(k.key)) return `${at}.key ${JSON.stringify(k.key)} appears twice`;
    seen.add(k.key);
    if (typeof k.kind !== 'string' || !(GENERATED_KINDS as readonly string[]).includes(k.kind))
      return `${at}.kind must be one of ${GENERATED_KINDS.join(', ')}`;
    const kind = k.kind as GeneratedKind;
    const { min, max } = LENGTH_BOUNDS[kind];
    if (typeof k.length !== 'number' || !Number.isInteger(k.length) || k.length < min || k.length > max)
      return `${at}.length must be an integer from ${min} to ${max} (${kind === 'password' ? 'characters' : 'random bytes'})`;
    if (k.alphabet !== undefined) {
      if (kind !== 'password') return `${at}.alphabet applies to kind password only`;
      const ap = alphabetProblem(k.alphabet);
      if (ap) return `${at}.alphabet ${ap}`;
    }
    const bits = entropyBits({ key: k.key, kind, length: k.length, alphabet: k.alphabet as string | undefined });
    if (bits < MIN_ENTROPY_BITS)
      return `${at} would carry ${bits.toFixed(1)} bits of entropy; at least ${MIN_ENTROPY_BITS} are required (longer, or a larger alphabet)`;
  }
  return undefined;
}

export function rotateEveryDaysProblem(v: unknown): string | undefined {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_ROTATE_EVERY_DAYS)
    return `must be an integer from 1 to ${MAX_ROTATE_EVERY_DAYS}`;
  return undefined;
}

/** The spec as stored: keys sorted, the default alphabet spelled out. Call on a spec generateSpecProblem accepted. */
export function normalizeSpec(keys: GeneratedKeySpec[]): GeneratorSpec {
  return {
    keys: [...keys]
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      .map((k) =>
        k.kind === 'password'
          ? { key: k.key, kind: k.kind, length: k.length, alphabet: k.alphabet ?? DEFAULT_ALPHABET }
          : { key: k.key, kind: k.kind, length: k.length },
      ),
  };
}

/** Random bytes from the HSM (HsmService.generateRandom); the generator zeroes each buffer it gets once used. */
export type RandomSource = (length: number) => Promise<Buffer>;

/** One request to the HSM is at most this many bytes. */
const MAX_REQUEST = 65_536;

/**
 * `length` characters drawn uniformly from `alphabet` by rejection sampling: a random byte b is
 * used only when b < 256 − (256 mod n), as b mod n; larger bytes are thrown away, so every
 * character is exactly equally likely (plain b mod n would favour the first 256 mod n ones).
 */
export async function randomString(alphabet: string, length: number, random: RandomSource): Promise<Buffer> {
  const n = alphabet.length;
  if (n < 2 || n > 256) throw new RangeError('alphabet must have 2 to 256 characters');
  const limit = 256 - (256 % n);
  const codes = Buffer.from(alphabet, 'latin1');
  const out = Buffer.alloc(length);
  let filled = 0;
  try {
    while (filled < length) {
      const need = length - filled;
      // Enough for the expected rejections, plus a little, in one round trip most of the time.
      const batch = await random(Math.min(MAX_REQUEST, Math.ceil((need * 256) / limit) + 8));
      try {
        for (let i = 0; i < batch.length && filled < length; i++) {
          const b = batch[i]!;
          if (b < limit) out[filled++] = codes[b % n]!;
        }
      } finally {
        batch.fill(0);
      }
    }
  } catch (err) {
    out.fill(0); // a later batch failed: what was drawn so far goes too
    throw err;
  }
  return out;
}

const HEX = Buffer.from('0123456789abcdef', 'latin1');
const B64 = Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/', 'latin1');

/** Hex spelling into a Buffer (no JavaScript string of the value is ever made, so it can be zeroed). */
export function hexInto(bytes: Buffer): Buffer {
  const out = Buffer.alloc(bytes.length * 2);
  for (let i = 0; i < bytes.length; i++) {
    out[2 * i] = HEX[bytes[i]! >> 4]!;
    out[2 * i + 1] = HEX[bytes[i]! & 15]!;
  }
  return out;
}

/** Standard base64 with padding, into a Buffer (as hexInto). */
export function base64Into(bytes: Buffer): Buffer {
  const out = Buffer.alloc(Math.ceil(bytes.length / 3) * 4);
  let o = 0;
  for (let i = 0; i < bytes.length; i += 3) {
    const rest = bytes.length - i;
    const n = (bytes[i]! << 16) | ((rest > 1 ? bytes[i + 1]! : 0) << 8) | (rest > 2 ? bytes[i + 2]! : 0);
    out[o++] = B64[(n >> 18) & 63]!;
    out[o++] = B64[(n >> 12) & 63]!;
    out[o++] = rest > 1 ? B64[(n >> 6) & 63]! : 0x3d;
    out[o++] = rest > 2 ? B64[n & 63]! : 0x3d;
  }
  return out;
}

/** One value per key, key → bytes (UTF-8/ASCII text). The caller zeroes them once sealed. */
export async function generateValues(spec: GeneratorSpec, random: RandomSource): Promise<Map<string, Buffer>> {
  const values = new Map<string, Buffer>();
  try {
    for (const k of spec.keys) {
      if (k.kind === 'password') {
        values.set(k.key, await randomString(k.alphabet ?? DEFAULT_ALPHABET, k.length, random));
        continue;
      }
      const bytes = await random(k.length);
      try {
        values.set(k.key, k.kind === 'hex' ? hexInto(bytes) : base64Into(bytes));
      } finally {
        bytes.fill(0);
      }
    }
    return values;
  } catch (err) {
    for (const v of values.values()) v.fill(0);
    throw err;
  }
}
