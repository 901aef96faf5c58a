import { createCipheriv } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from '@jest/globals';
import { openClusterKeyEnvelope, openSecretEnvelope, unwrapKeyKwp } from './agent-crypto.js';
import { decodeClusterKeyEnvelope, decodeSecretEnvelope, encodeSecretEnvelope, valueAad, type ValueContext } from './format.js';

interface Vectors {
  secretEnvelope: {
    clusterKey: string;
    dataKey: string;
    iv: string;
    context: ValueContext;
    aad: string;
    plaintext: string;
    wrappedDataKey: string;
    ciphertext: string;
    clusterKeyVersion: number;
    envelope: string;
  };
  clusterKeyEnvelope: { agentPrivateKeyPem: string; clusterKeyVersion: number; oaepHash: string; clusterKey: string; envelope: string };
}

/** The vectors published in docs/crypto.md, so the document cannot drift from the code. */
function documentedVectors(): Vectors {
  const doc = readFileSync(new URL('../../../docs/crypto.md', import.meta.url), 'utf8');
  const block = /```json test-vectors\n([\s\S]*?)\n```/.exec(doc);
  if (!block) throw new Error('docs/crypto.md has no test-vectors block');
  return JSON.parse(block[1]!) as Vectors;
}

const hex = (s: string) => Buffer.from(s, 'hex');

describe('docs/crypto.md test vectors', () => {
  const { secretEnvelope: v, clusterKeyEnvelope: k } = documentedVectors();

  it('AAD encoding', () => {
    expect(valueAad(v.context).toString('hex')).toBe(v.aad);
  });

  it('AES-KWP of the data key under the cluster key (RFC 5649)', () => {
    const c = createCipheriv('id-aes256-wrap-pad', hex(v.clusterKey), Buffer.from('a65959a6', 'hex'));
    expect(Buffer.concat([c.update(hex(v.dataKey)), c.final()]).toString('hex')).toBe(v.wrappedDataKey);
    expect(unwrapKeyKwp(hex(v.clusterKey), hex(v.wrappedDataKey)).toString('hex')).toBe(v.dataKey);
  });

  it('AES-256-GCM of the value under the data key, and the SGE1 encoding', () => {
    const g = createCipheriv('aes-256-gcm', hex(v.dataKey), hex(v.iv));
    g.setAAD(hex(v.aad));
    expect(Buffer.concat([g.update(v.plaintext, 'utf8'), g.final(), g.getAuthTag()]).toString('hex')).toBe(v.ciphertext);
    const encoded = encodeSecretEnvelope({
      clusterKeyVersion: v.clusterKeyVersion,
      wrappedDek: hex(v.wrappedDataKey),
      iv: hex(v.iv),
      ciphertext: hex(v.ciphertext),
    });
    expect(encoded.toString('hex')).toBe(v.envelope);
    expect(decodeSecretEnvelope(encoded).clusterKeyVersion).toBe(v.clusterKeyVersion);
  });

  it('an agent opens the documented envelope', () => {
    expect(openSecretEnvelope(hex(v.envelope), new Map([[v.clusterKeyVersion, hex(v.clusterKey)]]), v.context).toString()).toBe(
      v.plaintext,
    );
  });

  it('an agent opens the documented SGK1 cluster-key envelope', () => {
    expect(decodeClusterKeyEnvelope(hex(k.envelope))).toMatchObject({ clusterKeyVersion: k.clusterKeyVersion, oaepHash: k.oaepHash });
    expect(openClusterKeyEnvelope(k.agentPrivateKeyPem, hex(k.envelope))).toEqual({ version: k.clusterKeyVersion, key: hex(k.clusterKey) });
  });

  it('rejects malformed envelopes with a format error', () => {
    expect(() => decodeSecretEnvelope(Buffer.from('SGE2....'))).toThrow('not a Sigil secret envelope');
    expect(() => decodeSecretEnvelope(hex(v.envelope).subarray(0, 40))).toThrow('truncated');
    expect(() => decodeClusterKeyEnvelope(hex(k.envelope).subarray(0, 100))).toThrow('wrong length');
    expect(() => valueAad({ ...v.context, app: 'a\0b' })).toThrow('NUL');
  });
});
