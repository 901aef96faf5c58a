import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  CDK_GENERATE,
  CDK_UNWRAP,
  DEK_GENERATE,
  DEK_OPEN,
  DEK_UNWRAP,
  auditKeyLabel,
  caKeyLabel,
  fingerprintKeyLabel,
  rootKeyLabel,
  ticketKeyLabel,
} from '../../apps/control-plane/src/hsm/hsm-ops.js';
import { HsmService } from '../../apps/control-plane/src/hsm/hsm.service.js';
import {
  acquireLibrary,
  ckr,
  findSlotByLabel,
  pkcs11js,
  releaseLibrary,
  type Handle,
  type Pkcs11,
} from '../../apps/control-plane/src/hsm/pkcs11-library.js';
import { startTestApp, type TestApp } from '../harness/app-context.js';
import { testEnv, testHsmPin } from '../harness/test-env.js';

// Every kind of key Sigil makes, read back from SoftHSM with C_GetAttributeValue: each has
// exactly the uses it needs, set explicitly (SoftHSM's defaults would allow encrypt, decrypt,
// wrap, unwrap, sign and verify), and the HSM refuses what a key must not do.

const BOOLEAN_ATTRIBUTES = {
  token: pkcs11js.CKA_TOKEN,
  private: pkcs11js.CKA_PRIVATE,
  sensitive: pkcs11js.CKA_SENSITIVE,
  extractable: pkcs11js.CKA_EXTRACTABLE,
  modifiable: pkcs11js.CKA_MODIFIABLE,
  copyable: pkcs11js.CKA_COPYABLE,
  encrypt: pkcs11js.CKA_ENCRYPT,
  decrypt: pkcs11js.CKA_DECRYPT,
  wrap: pkcs11js.CKA_WRAP,
  unwrap: pkcs11js.CKA_UNWRAP,
  sign: pkcs11js.CKA_SIGN,
  verify: pkcs11js.CKA_VERIFY,
  derive: pkcs11js.CKA_DERIVE,
};
type Attrs = Record<keyof typeof BOOLEAN_ATTRIBUTES, boolean>;
const NO_USE = { encrypt: false, decrypt: false, wrap: false, unwrap: false, sign: false, verify: false, derive: false };
const tokenKey = { token: true, private: true, sensitive: true, extractable: false, modifiable: false, copyable: false };
const sessionKey = { token: false, private: true, sensitive: true, extractable: true, modifiable: false, copyable: false };

let t: TestApp;
let p: Pkcs11;
let session: Handle;
const module = testEnv().hsm.module;

function read(h: Handle, names = Object.keys(BOOLEAN_ATTRIBUTES) as Array<keyof Attrs>): Partial<Attrs> {
  return Object.fromEntries(names.map((n) => [n, p.C_GetAttributeValue(session, h, [{ type: BOOLEAN_ATTRIBUTES[n] }])[0]!.value[0] === 1]));
}

function find(cls: number, label: string): Handle {
  p.C_FindObjectsInit(session, [
    { type: pkcs11js.CKA_CLASS, value: cls },
    { type: pkcs11js.CKA_LABEL, value: label },
  ]);
  const [h] = p.C_FindObjects(session, 2);
  p.C_FindObjectsFinal(session);
  if (h === undefined) throw new Error(`${label} not found`);
  return h;
}

function refusal(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return ckr(err) ?? String(err);
  }
  return undefined;
}

const KWP = { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD };
const gcm = {
  mechanism: pkcs11js.CKM_AES_GCM,
  parameter: { type: pkcs11js.CK_PARAMS_AES_GCM, iv: Buffer.alloc(12), ivBits: 96, tagBits: 128 },
} as pkcs11js.Mechanism;

beforeAll(async () => {
  t = await startTestApp({ roles: ['http', 'grpc'] });
  await t.app.get(HsmService).ensureCaKey();
  p = acquireLibrary(module);
  session = p.C_OpenSession(findSlotByLabel(p, testEnv().hsm.tokenLabel)!, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  try {
    p.C_Login(session, pkcs11js.CKU_USER, testHsmPin());
  } catch (err) {
    if (ckr(err) !== 'CKR_USER_ALREADY_LOGGED_IN') throw err;
  }
});

afterAll(async () => {
  if (session !== undefined) p.C_CloseSession(session);
  releaseLibrary(module);
  await t?.dispose();
});

describe('least-privilege key templates', () => {
  it('token keys: root (wrap/unwrap), fingerprint (sign), audit (sign/verify), TLS session tickets (sign), CA (sign / verify)', () => {
    const prefix = t.keyLabelPrefix;
    expect(read(find(pkcs11js.CKO_SECRET_KEY, rootKeyLabel(prefix, 1)))).toEqual({ ...tokenKey, ...NO_USE, wrap: true, unwrap: true });
    expect(read(find(pkcs11js.CKO_SECRET_KEY, fingerprintKeyLabel(prefix)))).toEqual({ ...tokenKey, ...NO_USE, sign: true });
    expect(read(find(pkcs11js.CKO_SECRET_KEY, ticketKeyLabel(prefix)))).toEqual({ ...tokenKey, ...NO_USE, sign: true });
    const audit = find(pkcs11js.CKO_SECRET_KEY, auditKeyLabel(prefix));
    expect(read(audit)).toEqual({ ...tokenKey, ...NO_USE, sign: true, verify: true });
    const [neverExtractable, alwaysSensitive] = p.C_GetAttributeValue(session, audit, [
      { type: pkcs11js.CKA_NEVER_EXTRACTABLE },
      { type: pkcs11js.CKA_ALWAYS_SENSITIVE },
    ]);
    expect([neverExtractable!.value[0], alwaysSensitive!.value[0]]).toEqual([1, 1]);
    const caPrivate = find(pkcs11js.CKO_PRIVATE_KEY, caKeyLabel(prefix));
    expect(
      read(caPrivate, ['token', 'private', 'sensitive', 'extractable', 'modifiable', 'copyable', 'decrypt', 'unwrap', 'sign', 'derive']),
    ).toEqual({
      ...tokenKey,
      decrypt: false,
      unwrap: false,
      sign: true,
      derive: false,
    });
    expect(
      read(find(pkcs11js.CKO_PUBLIC_KEY, caKeyLabel(prefix)), ['token', 'modifiable', 'copyable', 'encrypt', 'wrap', 'verify', 'derive']),
    ).toEqual({
      token: true,
      modifiable: false,
      copyable: false,
      encrypt: false,
      wrap: false,
      verify: true,
      derive: false,
    });
  });

  it('session keys: a data key only encrypts, a cluster key only wraps, unwrapped copies no more', () => {
    const root = find(pkcs11js.CKO_SECRET_KEY, rootKeyLabel(t.keyLabelPrefix, 1));
    const dek = p.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, DEK_GENERATE);
    const cdk = p.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, CDK_GENERATE);
    const dekAgain = p.C_UnwrapKey(session, KWP, root, Buffer.from(p.C_WrapKey(session, KWP, root, dek, Buffer.alloc(64))), DEK_UNWRAP);
    const cdkAgain = p.C_UnwrapKey(session, KWP, root, Buffer.from(p.C_WrapKey(session, KWP, root, cdk, Buffer.alloc(64))), CDK_UNWRAP);
    // A connection secret's data key, as openConnectionSecret brings it back: it only decrypts, and never leaves again.
    const dekOpen = p.C_UnwrapKey(session, KWP, root, Buffer.from(p.C_WrapKey(session, KWP, root, dek, Buffer.alloc(64))), DEK_OPEN);
    try {
      expect(read(dekOpen)).toEqual({ ...sessionKey, ...NO_USE, decrypt: true, extractable: false });
      expect(refusal(() => p.C_EncryptInit(session, gcm, dekOpen))).toBe('CKR_KEY_FUNCTION_NOT_PERMITTED');
      expect(refusal(() => p.C_WrapKey(session, KWP, root, dekOpen, Buffer.alloc(64)))).toBe('CKR_KEY_UNEXTRACTABLE');
      expect(read(dek)).toEqual({ ...sessionKey, ...NO_USE, encrypt: true });
      expect(read(cdk)).toEqual({ ...sessionKey, ...NO_USE, wrap: true });
      expect(read(dekAgain)).toEqual({ ...sessionKey, ...NO_USE });
      expect(read(cdkAgain)).toEqual({ ...sessionKey, ...NO_USE, wrap: true });

      // What the keys must not do, refused by the HSM itself.
      expect(refusal(() => p.C_WrapKey(session, KWP, dek, cdk, Buffer.alloc(64)))).toBe('CKR_KEY_FUNCTION_NOT_PERMITTED'); // a data key cannot wrap
      expect(refusal(() => p.C_DecryptInit(session, gcm, dek))).toBe('CKR_KEY_FUNCTION_NOT_PERMITTED'); // nor decrypt a value
      expect(refusal(() => p.C_EncryptInit(session, gcm, dekAgain))).toBe('CKR_KEY_FUNCTION_NOT_PERMITTED'); // re-wrap copies cannot encrypt
      expect(refusal(() => p.C_EncryptInit(session, gcm, cdk))).toBe('CKR_KEY_FUNCTION_NOT_PERMITTED'); // a cluster key cannot encrypt
      expect(refusal(() => p.C_EncryptInit(session, gcm, root))).toBe('CKR_KEY_FUNCTION_NOT_PERMITTED'); // a root key cannot encrypt
      expect(refusal(() => p.C_SignInit(session, { mechanism: pkcs11js.CKM_AES_CMAC }, root))).toBe('CKR_KEY_FUNCTION_NOT_PERMITTED'); // nor sign
      const audit = find(pkcs11js.CKO_SECRET_KEY, auditKeyLabel(t.keyLabelPrefix));
      expect(refusal(() => p.C_GetAttributeValue(session, audit, [{ type: pkcs11js.CKA_VALUE }]))).toBe('CKR_ATTRIBUTE_SENSITIVE'); // never leaves
      expect(refusal(() => p.C_WrapKey(session, KWP, root, audit, Buffer.alloc(64)))).toBe('CKR_KEY_UNEXTRACTABLE'); // not even wrapped
      expect(refusal(() => p.C_SetAttributeValue(session, audit, [{ type: pkcs11js.CKA_EXTRACTABLE, value: true }]))).toBeDefined(); // nor made so
    } finally {
      for (const h of [dek, cdk, dekAgain, cdkAgain, dekOpen]) p.C_DestroyObject(session, h);
    }
  });
});
