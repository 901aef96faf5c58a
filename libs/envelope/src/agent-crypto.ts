import {
  constants,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  generateKeyPairSync,
  privateDecrypt,
  type KeyObject,
} from 'node:crypto';
import { EnvelopeFormatError, TAG_LENGTH, decodeClusterKeyEnvelope, decodeSecretEnvelope, valueAad, type ValueContext } from './format.js';

/**
 * Agent-side cryptography with Node's crypto only (there is no HSM in the cluster). The
 * agent's RSA private key never leaves the cluster; the control plane sees only its public key.
 */

export class EnvelopeOpenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EnvelopeOpenError';
  }
}

/** RSA-3072 (≈128-bit security) for the agent's long-lived key pair. */
export function generateAgentKeyPair(): { privateKeyPem: string; publicKeyDer: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 3072 });
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicKeyDer: publicKey.export({ type: 'spki', format: 'der' }),
  };
}

/** Modulus and exponent of an SPKI (DER) RSA public key, for importing it into the HSM. */
export function rsaPublicKeyComponents(spkiDer: Buffer): { modulus: Buffer; publicExponent: Buffer; bits: number } {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: spkiDer, format: 'der', type: 'spki' });
  } catch {
    throw new EnvelopeFormatError('not a DER SubjectPublicKeyInfo');
  }
  if (key.asymmetricKeyType !== 'rsa') throw new EnvelopeFormatError('agent key must be RSA');
  const jwk = key.export({ format: 'jwk' });
  const modulus = Buffer.from(jwk.n!, 'base64url');
  return { modulus, publicExponent: Buffer.from(jwk.e!, 'base64url'), bits: modulus.length * 8 };
}

/** Opens the cluster delivery key sent at enrollment or key rotation. */
export function openClusterKeyEnvelope(privateKeyPem: string | KeyObject, envelope: Buffer): { version: number; key: Buffer } {
  const e = decodeClusterKeyEnvelope(envelope);
  const key = typeof privateKeyPem === 'string' ? createPrivateKey(privateKeyPem) : privateKeyPem;
  try {
    const cdk = privateDecrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: e.oaepHash }, e.wrappedKey);
    if (cdk.length !== 32) throw new Error('length');
    return { version: e.clusterKeyVersion, key: cdk };
  } catch {
    throw new EnvelopeOpenError('cluster-key envelope does not open with this agent key');
  }
}

const KWP_IV = Buffer.from('a65959a6', 'hex');

/**
 * A key as a KeyObject. Node 24 makes one internally from a Buffer key on every
 * createDecipheriv, at ~20 µs; createSecretKey does the same copy in ~2 µs (measured, v24.21).
 * The copy is the same either way (native, freed with the object); the Buffers are still zeroed.
 */
const secretKey = (key: Buffer): KeyObject => createSecretKey(key);

/** AES key unwrap with padding (RFC 5649), the inverse of PKCS#11 CKM_AES_KEY_WRAP_PAD. */
export function unwrapKeyKwp(kek: Buffer, wrapped: Buffer): Buffer {
  const d = createDecipheriv('id-aes256-wrap-pad', secretKey(kek), KWP_IV);
  return Buffer.concat([d.update(wrapped), d.final()]);
}

/**
 * Decrypts one secret value. `clusterKeys` maps delivery-key versions to keys (an agent holds
 * the current and, during rotation, the previous). Fails — without saying why in detail — if
 * the envelope is for another cluster, was altered, or belongs to another context.
 */
export function openSecretEnvelope(envelope: Buffer, clusterKeys: ReadonlyMap<number, Buffer>, ctx: ValueContext): Buffer {
  const e = decodeSecretEnvelope(envelope);
  const cdk = clusterKeys.get(e.clusterKeyVersion);
  if (!cdk) throw new EnvelopeOpenError(`no cluster key version ${e.clusterKeyVersion}`);
  let dek: Buffer | undefined;
  try {
    dek = unwrapKeyKwp(cdk, e.wrappedDek);
    const d = createDecipheriv('aes-256-gcm', secretKey(dek), e.iv, { authTagLength: TAG_LENGTH });
    d.setAAD(valueAad(ctx));
    d.setAuthTag(e.ciphertext.subarray(e.ciphertext.length - TAG_LENGTH));
    return Buffer.concat([d.update(e.ciphertext.subarray(0, e.ciphertext.length - TAG_LENGTH)), d.final()]);
  } catch {
    throw new EnvelopeOpenError('secret envelope does not open (wrong cluster, altered, or wrong context)');
  } finally {
    dek?.fill(0);
  }
}
