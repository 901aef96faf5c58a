/**
 * Sigil's wire formats for encrypted material sent to agents. Versioned by a 4-byte magic;
 * all integers big-endian. See docs/crypto.md for the layouts and test vectors.
 */

export const SECRET_ENVELOPE_MAGIC = Buffer.from('SGE1', 'ascii');
export const CLUSTER_KEY_ENVELOPE_MAGIC = Buffer.from('SGK1', 'ascii');
export const IV_LENGTH = 12;
export const TAG_LENGTH = 16;

export type OaepHashName = 'sha256' | 'sha1';
const OAEP_IDS: Record<OaepHashName, number> = { sha1: 1, sha256: 2 };

/** Which secret version a value belongs to; bound to its ciphertext as AES-GCM additional data. */
export interface ValueContext {
  projectId: string;
  app: string;
  secret: string;
  /** The secret's id: a secret deleted and re-created under the same name is another secret. */
  secretId: string;
  version: number;
}

export class EnvelopeFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EnvelopeFormatError';
  }
}

/**
 * AAD = "sigil/value/v1" NUL projectId NUL app NUL secret NUL secretId NUL version (decimal). Names never
 * contain NUL (DNS-1123 / UUIDs), so the encoding is unambiguous.
 */
export function valueAad(ctx: ValueContext): Buffer {
  for (const part of [ctx.projectId, ctx.app, ctx.secret, ctx.secretId]) {
    if (part.length === 0 || part.includes('\0')) throw new EnvelopeFormatError('context fields must be non-empty and free of NUL');
  }
  if (!Number.isSafeInteger(ctx.version) || ctx.version < 1) throw new EnvelopeFormatError('context version must be a positive integer');
  return Buffer.from(['sigil/value/v1', ctx.projectId, ctx.app, ctx.secret, ctx.secretId, String(ctx.version)].join('\0'), 'utf8');
}

/** One secret version for one cluster. */
export interface SecretEnvelope {
  clusterKeyVersion: number;
  /** AES-KWP (RFC 5649) of the 32-byte data key under the cluster's delivery key */
  wrappedDek: Buffer;
  iv: Buffer;
  /** AES-256-GCM ciphertext followed by the 16-byte tag */
  ciphertext: Buffer;
}

//  0   4  magic "SGE1"
//  4   4  cluster key version (u32)
//  8   2  n = length of wrapped data key (u16)
// 10   n  wrapped data key
// 10+n 12 IV
// 22+n ..  ciphertext || tag
export function encodeSecretEnvelope(e: SecretEnvelope): Buffer {
  if (e.iv.length !== IV_LENGTH) throw new EnvelopeFormatError('IV must be 12 bytes');
  const head = Buffer.alloc(10);
  SECRET_ENVELOPE_MAGIC.copy(head, 0);
  head.writeUInt32BE(e.clusterKeyVersion, 4);
  head.writeUInt16BE(e.wrappedDek.length, 8);
  return Buffer.concat([head, e.wrappedDek, e.iv, e.ciphertext]);
}

export function decodeSecretEnvelope(buf: Buffer): SecretEnvelope {
  if (buf.length < 10 || !buf.subarray(0, 4).equals(SECRET_ENVELOPE_MAGIC))
    throw new EnvelopeFormatError('not a Sigil secret envelope (SGE1)');
  const n = buf.readUInt16BE(8);
  if (buf.length < 10 + n + IV_LENGTH + TAG_LENGTH) throw new EnvelopeFormatError('secret envelope truncated');
  return {
    clusterKeyVersion: buf.readUInt32BE(4),
    wrappedDek: buf.subarray(10, 10 + n),
    iv: buf.subarray(10 + n, 10 + n + IV_LENGTH),
    ciphertext: buf.subarray(10 + n + IV_LENGTH),
  };
}

/** A cluster delivery key for one agent, RSA-OAEP-wrapped to the agent's public key. */
export interface ClusterKeyEnvelope {
  clusterKeyVersion: number;
  oaepHash: OaepHashName;
  wrappedKey: Buffer;
}

//  0  4  magic "SGK1"
//  4  4  cluster key version (u32)
//  8  1  OAEP hash (1 = SHA-1, 2 = SHA-256; MGF1 uses the same hash)
//  9  2  n (u16)
// 11  n  RSA-OAEP(agent public key, delivery key)
export function encodeClusterKeyEnvelope(e: ClusterKeyEnvelope): Buffer {
  const head = Buffer.alloc(11);
  CLUSTER_KEY_ENVELOPE_MAGIC.copy(head, 0);
  head.writeUInt32BE(e.clusterKeyVersion, 4);
  head.writeUInt8(OAEP_IDS[e.oaepHash], 8);
  head.writeUInt16BE(e.wrappedKey.length, 9);
  return Buffer.concat([head, e.wrappedKey]);
}

export function decodeClusterKeyEnvelope(buf: Buffer): ClusterKeyEnvelope {
  if (buf.length < 11 || !buf.subarray(0, 4).equals(CLUSTER_KEY_ENVELOPE_MAGIC))
    throw new EnvelopeFormatError('not a Sigil cluster-key envelope (SGK1)');
  const hashId = buf.readUInt8(8);
  const oaepHash = (Object.entries(OAEP_IDS).find(([, id]) => id === hashId)?.[0] ?? undefined) as OaepHashName | undefined;
  if (!oaepHash) throw new EnvelopeFormatError(`unknown OAEP hash id ${hashId}`);
  const n = buf.readUInt16BE(9);
  if (buf.length !== 11 + n) throw new EnvelopeFormatError('cluster-key envelope has the wrong length');
  return { clusterKeyVersion: buf.readUInt32BE(4), oaepHash, wrappedKey: buf.subarray(11) };
}
