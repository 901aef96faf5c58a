import { readFileSync } from 'node:fs';
import { describe, expect, it } from '@jest/globals';
import { acquireLibrary, findSlotByLabel, pkcs11js, releaseLibrary } from '../../apps/control-plane/src/hsm/pkcs11-library.js';
import { testEnv, testHsmPin } from '../harness/test-env.js';

// The HSM and the agent must agree bit for bit: SoftHSM's AES-KWP and AES-GCM, fed the keys of
// the documented vectors, produce the documented wrapped key and ciphertext.

const doc = readFileSync(new URL('../../docs/crypto.md', import.meta.url), 'utf8');
const v = (JSON.parse(/```json test-vectors\n([\s\S]*?)\n```/.exec(doc)![1]!) as { secretEnvelope: Record<string, string> }).secretEnvelope;
const hex = (s: string | undefined) => Buffer.from(s!, 'hex');

describe('HSM interoperability with the documented vectors', () => {
  it('wraps and encrypts exactly as the agent expects', () => {
    const { module, tokenLabel } = testEnv().hsm;
    const p = acquireLibrary(module);
    const s = p.C_OpenSession(findSlotByLabel(p, tokenLabel)!, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    try {
      p.C_Login(s, pkcs11js.CKU_USER, testHsmPin());
      const key = (value: Buffer, attrs: Array<[number, boolean]>) =>
        p.C_CreateObject(s, [
          { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
          { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
          { type: pkcs11js.CKA_TOKEN, value: false },
          { type: pkcs11js.CKA_VALUE, value },
          ...attrs.map(([type, value]) => ({ type, value })),
        ]);
      const cdk = key(hex(v.clusterKey), [[pkcs11js.CKA_WRAP, true]]);
      const dek = key(hex(v.dataKey), [
        [pkcs11js.CKA_ENCRYPT, true],
        [pkcs11js.CKA_EXTRACTABLE, true],
      ]);
      const wrapped = p.C_WrapKey(s, { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD }, cdk, dek, Buffer.alloc(64));
      expect(wrapped.toString('hex')).toBe(v.wrappedDataKey);
      p.C_EncryptInit(
        s,
        {
          mechanism: pkcs11js.CKM_AES_GCM,
          parameter: { type: pkcs11js.CK_PARAMS_AES_GCM, iv: hex(v.iv), aad: hex(v.aad), ivBits: 96, tagBits: 128 } as pkcs11js.AesGCM,
        },
        dek,
      );
      const plaintext = Buffer.from(v.plaintext!, 'utf8');
      expect(p.C_Encrypt(s, plaintext, Buffer.alloc(plaintext.length + 16)).toString('hex')).toBe(v.ciphertext);
      p.C_DestroyObject(s, cdk);
      p.C_DestroyObject(s, dek);
    } finally {
      p.C_CloseSession(s);
      releaseLibrary(module);
    }
  });
});
