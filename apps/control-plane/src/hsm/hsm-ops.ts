import { randomBytes } from 'node:crypto';
import { ckr, pkcs11js, type Handle, type Pkcs11 } from './pkcs11-library.js';

/**
 * The PKCS#11 operations Sigil performs, as synchronous calls on one session. They run only
 * inside an HSM worker thread (hsm-worker.ts), one task at a time per session, so the event
 * loop never waits on the HSM and no session is ever shared by concurrent calls.
 *
 * Invariants kept here:
 * - root keys are token objects generated in the HSM: sensitive, never extractable;
 * - data keys (one per secret version) and cluster delivery keys are session objects,
 *   generated in the HSM, leave it only wrapped, and are destroyed after each task;
 * - there is no operation that decrypts a value: the centre cannot read what it stores. The one
 *   thing the control plane opens is a database connection's admin password
 *   (openConnectionSecret), and only under the connection AAD, which no value is sealed with.
 */

/** Root keys are labelled `<prefix>-root-v<N>`; the prefix lets installations share a token. */
export const rootKeyLabel = (prefix: string, version: number) => `${prefix}-root-v${version}`;

export type OaepHash = 'sha256' | 'sha1';

/** What a data-key seal produced; the plaintext and the unwrapped key stay in the HSM. */
export interface SealedValue {
  rootKeyVersion: number;
  /** AES-KWP(root key, data key) */
  wrappedDek: Buffer;
  iv: Buffer;
  /** AES-256-GCM(data key, value, aad) — ciphertext followed by the 16-byte tag */
  ciphertext: Buffer;
}

export interface WrappedKey {
  rootKeyVersion: number;
  wrapped: Buffer;
}

export interface RsaPublicKey {
  modulus: Buffer;
  publicExponent: Buffer;
}

const KWP = { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD };
const GCM_TAG_BITS = 128;

/**
 * Every usage and lifecycle attribute, set explicitly: a key gets exactly the uses it needs and
 * nothing falls back to the token's defaults (SoftHSM defaults encrypt/decrypt/wrap/unwrap/
 * sign/verify to true). `uses` lists the only usage attributes that are true.
 */
type Use = 'encrypt' | 'decrypt' | 'wrap' | 'unwrap' | 'sign' | 'verify';
const USE_ATTRIBUTES: Record<Use, number> = {
  encrypt: pkcs11js.CKA_ENCRYPT,
  decrypt: pkcs11js.CKA_DECRYPT,
  wrap: pkcs11js.CKA_WRAP,
  unwrap: pkcs11js.CKA_UNWRAP,
  sign: pkcs11js.CKA_SIGN,
  verify: pkcs11js.CKA_VERIFY,
};

const secretKeyTemplate = (o: { token: boolean; extractable: boolean; uses: Use[] }) => [
  { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
  { type: pkcs11js.CKA_TOKEN, value: o.token },
  { type: pkcs11js.CKA_PRIVATE, value: true },
  { type: pkcs11js.CKA_SENSITIVE, value: true },
  { type: pkcs11js.CKA_EXTRACTABLE, value: o.extractable },
  { type: pkcs11js.CKA_COPYABLE, value: false },
  { type: pkcs11js.CKA_DESTROYABLE, value: true }, // root keys are destroyed after rotation, session keys after each task
  ...(Object.entries(USE_ATTRIBUTES) as Array<[Use, number]>).map(([use, type]) => ({ type, value: o.uses.includes(use) })),
  { type: pkcs11js.CKA_DERIVE, value: false },
];

/**
 * Always the last attribute of a template: SoftHSM applies a template in order and, once
 * CKA_MODIFIABLE is false, refuses the attributes after it on unwrap (CKR_ATTRIBUTE_READ_ONLY).
 */
const NOT_MODIFIABLE = { type: pkcs11js.CKA_MODIFIABLE, value: false };

const aesTemplate = (o: { extractable: boolean; uses: Use[] }, extra: pkcs11js.Attribute[] = []) => [
  ...secretKeyTemplate({ token: false, ...o }),
  { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
  ...extra,
  NOT_MODIFIABLE,
];

/** A data key: encrypts one value, then is wrapped for storage (so extractable, but only by wrapping: sensitive). */
export const DEK_GENERATE = aesTemplate({ extractable: true, uses: ['encrypt'] }, [{ type: pkcs11js.CKA_VALUE_LEN, value: 32 }]);
/** A data key brought back only to be wrapped again (rotation, cluster envelopes): it cannot encrypt or decrypt. */
export const DEK_UNWRAP = aesTemplate({ extractable: true, uses: [] });
/** A connection secret's data key, brought back for one decryption (openConnectionSecret). */
export const DEK_OPEN = aesTemplate({ extractable: false, uses: ['decrypt'] });
/** A cluster delivery key: wraps data keys for one cluster. */
export const CDK_GENERATE = aesTemplate({ extractable: true, uses: ['wrap'] }, [{ type: pkcs11js.CKA_VALUE_LEN, value: 32 }]);
export const CDK_UNWRAP = aesTemplate({ extractable: true, uses: ['wrap'] });

/** A long-lived token key generated in the HSM: never extractable, one or two uses. */
const tokenKeyTemplate = (label: string, keyType: number, uses: Use[]) => [
  ...secretKeyTemplate({ token: true, extractable: false, uses }),
  { type: pkcs11js.CKA_KEY_TYPE, value: keyType },
  { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
  { type: pkcs11js.CKA_LABEL, value: label },
  { type: pkcs11js.CKA_ID, value: Buffer.from(label) },
  NOT_MODIFIABLE,
];

function oaepMechanism(hash: OaepHash): pkcs11js.Mechanism {
  return {
    mechanism: pkcs11js.CKM_RSA_PKCS_OAEP,
    parameter: {
      type: pkcs11js.CK_PARAMS_RSA_OAEP,
      hashAlg: hash === 'sha256' ? pkcs11js.CKM_SHA256 : pkcs11js.CKM_SHA_1,
      mgf: hash === 'sha256' ? pkcs11js.CKG_MGF1_SHA256 : pkcs11js.CKG_MGF1_SHA1,
      source: 1, // CKZ_DATA_SPECIFIED (pkcs11js wants the number)
    } as pkcs11js.RsaOAEP,
  };
}

/** Root-key handles by version, per worker; cleared when the token forgets them (reset, re-login). */
export class RootKeyHandles {
  private readonly handles = new Map<number, Handle>();

  constructor(
    private readonly p: Pkcs11,
    private readonly prefix: string,
  ) {}

  get(session: Handle, version: number): Handle {
    const cached = this.handles.get(version);
    if (cached) return cached;
    const found = findByLabel(this.p, session, rootKeyLabel(this.prefix, version));
    if (found.length === 0) throw new HsmKeyError(`root key version ${version} is not in the HSM`);
    if (found.length > 1) throw new HsmKeyError(`root key version ${version} exists ${found.length} times in the HSM`);
    this.handles.set(version, found[0]!);
    return found[0]!;
  }

  clear(): void {
    this.handles.clear();
  }
}

export class HsmKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HsmKeyError';
  }
}

function findByLabel(p: Pkcs11, session: Handle, label: string): Handle[] {
  return findKeys(p, session, pkcs11js.CKO_SECRET_KEY, label);
}

export function generateRootKey(p: Pkcs11, session: Handle, prefix: string, version: number): void {
  const label = rootKeyLabel(prefix, version);
  if (findByLabel(p, session, label).length > 0) return; // idempotent: a crash after creation
  p.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, tokenKeyTemplate(label, pkcs11js.CKK_AES, ['wrap', 'unwrap']));
}

/** The installation's fingerprint key: HMAC-SHA256, so fingerprints cannot be brute-forced offline. */
export const fingerprintKeyLabel = (prefix: string) => `${prefix}-fingerprint-v1`;

export function ensureFingerprintKey(p: Pkcs11, session: Handle, prefix: string): void {
  const label = fingerprintKeyLabel(prefix);
  if (findByLabel(p, session, label).length > 0) return;
  p.C_GenerateKey(
    session,
    { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN },
    tokenKeyTemplate(label, pkcs11js.CKK_GENERIC_SECRET, ['sign']),
  );
}

export function findFingerprintKey(p: Pkcs11, session: Handle, prefix: string): Handle {
  const found = findByLabel(p, session, fingerprintKeyLabel(prefix));
  if (found.length !== 1) throw new HsmKeyError(`fingerprint key ${fingerprintKeyLabel(prefix)} found ${found.length} times`);
  return found[0]!;
}

export function hmac(p: Pkcs11, session: Handle, key: Handle, data: Buffer): Buffer {
  p.C_SignInit(session, { mechanism: pkcs11js.CKM_SHA256_HMAC }, key);
  return Buffer.from(p.C_Sign(session, data, Buffer.alloc(32)));
}

/**
 * The audit-chain key: HMAC-SHA256, generated in the HSM, never extractable, usable only to
 * sign (append) and verify. Without it nobody can forge or recompute the chain (docs/crypto.md).
 */
export const auditKeyLabel = (prefix: string) => `${prefix}-audit-v1`;

export function ensureAuditKey(p: Pkcs11, session: Handle, prefix: string): void {
  const label = auditKeyLabel(prefix);
  if (findByLabel(p, session, label).length > 0) return;
  p.C_GenerateKey(
    session,
    { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN },
    tokenKeyTemplate(label, pkcs11js.CKK_GENERIC_SECRET, ['sign', 'verify']),
  );
}

export function findAuditKey(p: Pkcs11, session: Handle, prefix: string): Handle {
  const found = findByLabel(p, session, auditKeyLabel(prefix));
  if (found.length !== 1) throw new HsmKeyError(`audit key ${auditKeyLabel(prefix)} found ${found.length} times`);
  return found[0]!;
}

/** HMAC-SHA256 checked inside the HSM (C_Verify); a wrong or malformed MAC is `false`, not an error. */
/**
 * The TLS session-ticket key: HMAC-SHA256, generated in the HSM, usable only to sign. Every
 * replica derives the same ticket keys from it per epoch (sessionTicketKeys), so an agent's
 * ticket resumes its session after a restart or on another replica; the key itself never
 * leaves the HSM, and a derived key opens tickets of its epoch only.
 */
export const ticketKeyLabel = (prefix: string) => `${prefix}-tls-tickets-v1`;

export function ensureTicketKey(p: Pkcs11, session: Handle, prefix: string): void {
  const label = ticketKeyLabel(prefix);
  if (findByLabel(p, session, label).length > 0) return;
  p.C_GenerateKey(
    session,
    { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN },
    tokenKeyTemplate(label, pkcs11js.CKK_GENERIC_SECRET, ['sign']),
  );
}

export function findTicketKey(p: Pkcs11, session: Handle, prefix: string): Handle {
  const found = findByLabel(p, session, ticketKeyLabel(prefix));
  if (found.length !== 1) throw new HsmKeyError(`session-ticket key ${ticketKeyLabel(prefix)} found ${found.length} times`);
  return found[0]!;
}

/** The 48 bytes Node's `setTicketKeys` takes (name, HMAC key, AES key) for one epoch. */
export function sessionTicketKeys(p: Pkcs11, session: Handle, key: Handle, epoch: number): Buffer {
  const part = (n: string) => hmac(p, session, key, Buffer.from(`sigil tls session tickets v1|${epoch}|${n}`, 'utf8'));
  return Buffer.concat([part('a'), part('b')]).subarray(0, 48);
}

export function hmacVerify(p: Pkcs11, session: Handle, key: Handle, data: Buffer, mac: Buffer): boolean {
  p.C_VerifyInit(session, { mechanism: pkcs11js.CKM_SHA256_HMAC }, key);
  try {
    return p.C_Verify(session, data, mac);
  } catch (err) {
    const code = ckr(err);
    if (code === 'CKR_SIGNATURE_INVALID' || code === 'CKR_SIGNATURE_LEN_RANGE') return false;
    throw err;
  }
}

/**
 * A whole batch of audit appends in one task: checks the stored head's MAC once, MACs each
 * record in order (record i's message is `before ‖ hex(MAC of record i-1) ‖ after`, the first
 * one chained to `prevHash`), then MACs the new head (`headPrefix ‖ last MAC`) — null if the
 * stored head did not verify, so an append cannot launder a truncated or edited log.
 */
export function auditAppendBatch(
  p: Pkcs11,
  session: Handle,
  key: Handle,
  task: {
    records: Array<{ before: Buffer; after: Buffer }>;
    prevHash: Buffer;
    headPrefix: Buffer;
    previousHead: { message: Buffer; mac: Buffer } | null;
  },
): { macs: Buffer[]; headMac: Buffer | null } {
  const previousOk = task.previousHead !== null && hmacVerify(p, session, key, task.previousHead.message, task.previousHead.mac);
  const macs: Buffer[] = [];
  let prev = task.prevHash;
  for (const r of task.records) {
    prev = hmac(p, session, key, Buffer.concat([r.before, Buffer.from(prev.toString('hex'), 'utf8'), r.after]));
    macs.push(prev);
  }
  return { macs, headMac: previousOk ? hmac(p, session, key, Buffer.concat([task.headPrefix, prev])) : null };
}

/** The cluster CA's signing key: EC P-256, generated in the HSM; the private half never leaves it. */
export const caKeyLabel = (prefix: string) => `${prefix}-ca-v1`;
const P256_OID = Buffer.from('06082a8648ce3d030107', 'hex');
const P256_SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');

export function ensureCaKey(p: Pkcs11, session: Handle, prefix: string): void {
  const label = caKeyLabel(prefix);
  if (findKeys(p, session, pkcs11js.CKO_PRIVATE_KEY, label).length > 0) return;
  p.C_GenerateKeyPair(
    session,
    { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN },
    [
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: false },
      { type: pkcs11js.CKA_COPYABLE, value: false },
      { type: pkcs11js.CKA_VERIFY, value: true },
      { type: pkcs11js.CKA_ENCRYPT, value: false },
      { type: pkcs11js.CKA_WRAP, value: false },
      { type: pkcs11js.CKA_DERIVE, value: false },
      { type: pkcs11js.CKA_EC_PARAMS, value: P256_OID },
      { type: pkcs11js.CKA_LABEL, value: label },
      { type: pkcs11js.CKA_ID, value: Buffer.from(label) },
      NOT_MODIFIABLE,
    ],
    [
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_COPYABLE, value: false },
      { type: pkcs11js.CKA_SIGN, value: true },
      { type: pkcs11js.CKA_SIGN_RECOVER, value: false },
      { type: pkcs11js.CKA_DECRYPT, value: false },
      { type: pkcs11js.CKA_UNWRAP, value: false },
      { type: pkcs11js.CKA_DERIVE, value: false },
      { type: pkcs11js.CKA_LABEL, value: label },
      { type: pkcs11js.CKA_ID, value: Buffer.from(label) },
      NOT_MODIFIABLE,
    ],
  );
}

function findKeys(p: Pkcs11, session: Handle, cls: number, label: string): Handle[] {
  p.C_FindObjectsInit(session, [
    { type: pkcs11js.CKA_CLASS, value: cls },
    { type: pkcs11js.CKA_LABEL, value: label },
  ]);
  try {
    return p.C_FindObjects(session, 16);
  } finally {
    p.C_FindObjectsFinal(session);
  }
}

/** The CA public key as a DER SubjectPublicKeyInfo. */
export function caPublicKey(p: Pkcs11, session: Handle, prefix: string): Buffer {
  const [pub] = findKeys(p, session, pkcs11js.CKO_PUBLIC_KEY, caKeyLabel(prefix));
  if (pub === undefined) throw new HsmKeyError(`CA key ${caKeyLabel(prefix)} is not in the HSM`);
  const [attr] = p.C_GetAttributeValue(session, pub, [{ type: pkcs11js.CKA_EC_POINT }]);
  const ecPoint = attr!.value; // DER OCTET STRING holding 04 || X || Y
  const point = ecPoint[0] === 0x04 && ecPoint[1] === 0x41 ? ecPoint.subarray(2) : ecPoint;
  if (point.length !== 65 || point[0] !== 0x04) throw new HsmKeyError('unexpected EC point encoding from the HSM');
  return Buffer.concat([P256_SPKI_PREFIX, point]); // the prefix ends with the BIT STRING header (03 42 00)
}

export function findCaPrivateKey(p: Pkcs11, session: Handle, prefix: string): Handle {
  const [key] = findKeys(p, session, pkcs11js.CKO_PRIVATE_KEY, caKeyLabel(prefix));
  if (key === undefined) throw new HsmKeyError(`CA key ${caKeyLabel(prefix)} is not in the HSM`);
  return key;
}

/** ECDSA over a SHA-256 digest; returns the raw r || s (64 bytes), as WebCrypto does. */
export function ecdsaSign(p: Pkcs11, session: Handle, key: Handle, digest: Buffer): Buffer {
  p.C_SignInit(session, { mechanism: pkcs11js.CKM_ECDSA }, key);
  return Buffer.from(p.C_Sign(session, digest, Buffer.alloc(72)));
}

export function destroyRootKey(p: Pkcs11, session: Handle, prefix: string, version: number): number {
  const found = findByLabel(p, session, rootKeyLabel(prefix, version));
  for (const h of found) p.C_DestroyObject(session, h);
  return found.length;
}

export interface RootKeyInfo {
  version: number;
  sensitive: boolean;
  extractable: boolean;
  neverExtractable: boolean;
  alwaysSensitive: boolean;
}

export function listRootKeys(p: Pkcs11, session: Handle, prefix: string): RootKeyInfo[] {
  p.C_FindObjectsInit(session, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_TOKEN, value: true },
  ]);
  let handles: Handle[];
  try {
    handles = p.C_FindObjects(session, 1000);
  } finally {
    p.C_FindObjectsFinal(session);
  }
  const out: RootKeyInfo[] = [];
  for (const h of handles) {
    const attrs = p.C_GetAttributeValue(session, h, [
      { type: pkcs11js.CKA_LABEL },
      { type: pkcs11js.CKA_SENSITIVE },
      { type: pkcs11js.CKA_EXTRACTABLE },
      { type: pkcs11js.CKA_NEVER_EXTRACTABLE },
      { type: pkcs11js.CKA_ALWAYS_SENSITIVE },
    ]);
    const label = attrs[0]!.value.toString('utf8');
    const match = new RegExp(`^${prefix}-root-v(\\d+)$`).exec(label);
    if (!match) continue;
    const bool = (i: number) => attrs[i]!.value[0] === 1;
    out.push({ version: Number(match[1]), sensitive: bool(1), extractable: bool(2), neverExtractable: bool(3), alwaysSensitive: bool(4) });
  }
  return out.sort((a, b) => a.version - b.version);
}

/** Encrypt-on-ingest: a fresh data key per value, AES-256-GCM with `aad`, wrapped under the root key. */
export function seal(p: Pkcs11, session: Handle, root: Handle, rootKeyVersion: number, plaintext: Buffer, aad: Buffer): SealedValue {
  const dek = p.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, DEK_GENERATE);
  try {
    const iv = randomBytes(12);
    p.C_EncryptInit(
      session,
      {
        mechanism: pkcs11js.CKM_AES_GCM,
        parameter: { type: pkcs11js.CK_PARAMS_AES_GCM, iv, aad, ivBits: 96, tagBits: GCM_TAG_BITS } as pkcs11js.AesGCM,
      },
      dek,
    );
    const ciphertext = Buffer.from(p.C_Encrypt(session, plaintext, Buffer.alloc(plaintext.length + GCM_TAG_BITS / 8)));
    const wrappedDek = Buffer.from(p.C_WrapKey(session, KWP, root, dek, Buffer.alloc(64)));
    return { rootKeyVersion, wrappedDek, iv, ciphertext };
  } finally {
    p.C_DestroyObject(session, dek);
  }
}

/** Whose admin password a connection secret is: the AAD binds its ciphertext to the connection. */
export interface ConnectionSecretContext {
  projectId: string;
  connectionId: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * `"sigil/connection/v1" NUL projectId NUL connectionId` (docs/crypto.md, "Database
 * connections"). Another domain than a secret value's `"sigil/value/v1" …`, so a value's
 * ciphertext never opens as a connection password, nor a connection password as a value (an
 * agent would find the AAD of a DesiredSecret, which starts with sigil/value/v1). Computed only
 * here, in the worker, from two lowercase UUIDs (no NUL can hide in them).
 */
export function connectionAad(ctx: ConnectionSecretContext): Buffer {
  if (!UUID.test(ctx.projectId) || !UUID.test(ctx.connectionId))
    throw new HsmKeyError('a connection secret is named by two lowercase UUIDs');
  return Buffer.from(`sigil/connection/v1\0${ctx.projectId}\0${ctx.connectionId}`, 'utf8');
}

/**
 * Opens one connection secret sealed with `seal(…, connectionAad(ctx))`: the data key comes back
 * as a session object that can only decrypt, is used once and destroyed. A wrong context, or a
 * ciphertext sealed under any other AAD, fails GCM's check (CKR_ENCRYPTED_DATA_INVALID).
 */
export function openConnectionSecret(p: Pkcs11, session: Handle, root: Handle, sealed: SealedValue, ctx: ConnectionSecretContext): Buffer {
  const aad = connectionAad(ctx);
  if (sealed.ciphertext.length < GCM_TAG_BITS / 8) throw new HsmKeyError('a sealed value is at least its GCM tag long');
  const dek = p.C_UnwrapKey(session, KWP, root, sealed.wrappedDek, DEK_OPEN);
  try {
    p.C_DecryptInit(
      session,
      {
        mechanism: pkcs11js.CKM_AES_GCM,
        parameter: { type: pkcs11js.CK_PARAMS_AES_GCM, iv: sealed.iv, aad, ivBits: 96, tagBits: GCM_TAG_BITS } as pkcs11js.AesGCM,
      },
      dek,
    );
    // pkcs11js returns the part of the buffer it filled: no second copy to forget to zero.
    return p.C_Decrypt(session, sealed.ciphertext, Buffer.alloc(sealed.ciphertext.length));
  } finally {
    p.C_DestroyObject(session, dek);
  }
}

/** The largest C_GenerateRandom request one task makes (callers loop for more). */
export const MAX_RANDOM_BYTES = 65_536;

/**
 * `length` bytes from the HSM's random number generator (C_GenerateRandom): what generated
 * secrets are made of (docs/crypto.md, "Generated secrets").
 */
export function generateRandom(p: Pkcs11, session: Handle, length: number): Buffer {
  if (!Number.isInteger(length) || length < 1 || length > MAX_RANDOM_BYTES)
    throw new RangeError(`random length must be an integer between 1 and ${MAX_RANDOM_BYTES}`);
  // pkcs11js fills and returns the buffer it is given: no second copy to forget to zero.
  const out = Buffer.alloc(length);
  p.C_GenerateRandom(session, out);
  return out;
}

/** Re-wraps a stored key (data key or cluster key) from one root key to another, inside the HSM. */
export function rewrap(p: Pkcs11, session: Handle, from: Handle, to: Handle, wrapped: Buffer, kind: 'dek' | 'cdk'): Buffer {
  const key = p.C_UnwrapKey(session, KWP, from, wrapped, kind === 'dek' ? DEK_UNWRAP : CDK_UNWRAP);
  try {
    return Buffer.from(p.C_WrapKey(session, KWP, to, key, Buffer.alloc(64)));
  } finally {
    p.C_DestroyObject(session, key);
  }
}

/**
 * A new cluster delivery key: returned wrapped twice — under the root key (for storage) and
 * under the agent's RSA public key with OAEP (sent to the agent once).
 */
export function createClusterKey(
  p: Pkcs11,
  session: Handle,
  root: Handle,
  agentKey: RsaPublicKey,
  oaep: OaepHash,
): { forStorage: Buffer; forAgent: Buffer } {
  const pub = importRsaPublicKey(p, session, agentKey);
  const cdk = p.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, CDK_GENERATE);
  try {
    const forAgent = Buffer.from(p.C_WrapKey(session, oaepMechanism(oaep), pub, cdk, Buffer.alloc(1024)));
    const forStorage = Buffer.from(p.C_WrapKey(session, KWP, root, cdk, Buffer.alloc(64)));
    return { forStorage, forAgent };
  } finally {
    p.C_DestroyObject(session, cdk);
    p.C_DestroyObject(session, pub);
  }
}

/**
 * Per-cluster envelopes: each data key re-wrapped under each cluster's delivery key, never in
 * clear. A data key shared by several clusters of the batch (one publish to many clusters) is
 * unwrapped once for all of them, which halves the HSM operations of a fan-out; every key
 * unwrapped here is a session object destroyed before returning.
 */
export function wrapForClusters(
  p: Pkcs11,
  session: Handle,
  roots: (version: number) => Handle,
  items: Array<{ clusterKey: WrappedKey; deks: WrappedKey[] }>,
): Buffer[][] {
  const deks = new Map<string, Handle>();
  const dek = (d: WrappedKey): Handle => {
    const id = `${d.rootKeyVersion}:${d.wrapped.toString('base64')}`;
    let h = deks.get(id);
    if (h === undefined) {
      h = p.C_UnwrapKey(session, KWP, roots(d.rootKeyVersion), d.wrapped, DEK_UNWRAP);
      deks.set(id, h);
    }
    return h;
  };
  try {
    return items.map(({ clusterKey, deks: wanted }) => {
      const cdk = p.C_UnwrapKey(session, KWP, roots(clusterKey.rootKeyVersion), clusterKey.wrapped, CDK_UNWRAP);
      try {
        return wanted.map((d) => Buffer.from(p.C_WrapKey(session, KWP, cdk, dek(d), Buffer.alloc(64))));
      } finally {
        p.C_DestroyObject(session, cdk);
      }
    });
  } finally {
    for (const h of deks.values()) p.C_DestroyObject(session, h);
  }
}

function importRsaPublicKey(p: Pkcs11, session: Handle, key: RsaPublicKey): Handle {
  return p.C_CreateObject(session, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_RSA },
    { type: pkcs11js.CKA_TOKEN, value: false },
    { type: pkcs11js.CKA_PRIVATE, value: false },
    { type: pkcs11js.CKA_COPYABLE, value: false },
    { type: pkcs11js.CKA_WRAP, value: true },
    { type: pkcs11js.CKA_ENCRYPT, value: false },
    { type: pkcs11js.CKA_VERIFY, value: false },
    { type: pkcs11js.CKA_VERIFY_RECOVER, value: false },
    { type: pkcs11js.CKA_DERIVE, value: false },
    { type: pkcs11js.CKA_MODULUS, value: key.modulus },
    { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: key.publicExponent },
    NOT_MODIFIABLE,
  ]);
}

/** Which OAEP hash this HSM accepts for key wrapping (SoftHSM 2.6 only SHA-1; real HSMs SHA-256). */
export function probeOaep(p: Pkcs11, session: Handle, probeKey: RsaPublicKey): OaepHash[] {
  const supported: OaepHash[] = [];
  const pub = importRsaPublicKey(p, session, probeKey);
  const key = p.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, CDK_GENERATE);
  try {
    for (const hash of ['sha256', 'sha1'] as const) {
      try {
        p.C_WrapKey(session, oaepMechanism(hash), pub, key, Buffer.alloc(1024));
        supported.push(hash);
      } catch {
        // not supported by this HSM
      }
    }
  } finally {
    p.C_DestroyObject(session, key);
    p.C_DestroyObject(session, pub);
  }
  return supported;
}
