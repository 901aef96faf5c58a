import { randomBytes } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { acquireLibrary, findSlotByLabel, pkcs11js, type Handle, type Pkcs11 } from '../../apps/control-plane/src/hsm/pkcs11-library.js';
import { valueAad } from '@sigil/envelope';

/**
 * The floor: the same PKCS#11 mechanisms as Sigil's operations, called directly and
 * synchronously through pkcs11js on one session per thread, with no pool, no messages, no
 * database. Runs in a worker thread so several can run at once.
 */
export interface RawLoopInput {
  module: string;
  tokenLabel: string;
  pin: string;
  op: 'ingest' | 'envelope';
  ms: number;
  secretsPerCluster: number;
  /**
   * Unwrap each data key once and wrap it for every cluster (what a batched delivery build does:
   * one HSM message per batch of clusters), instead of once per cluster.
   */
  shareDataKeys?: boolean;
}

const KWP = { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD };
const aes = (attrs: Array<[number, boolean]>, withLen: boolean, token = false) => [
  { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
  { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
  { type: pkcs11js.CKA_TOKEN, value: token },
  { type: pkcs11js.CKA_PRIVATE, value: true },
  { type: pkcs11js.CKA_SENSITIVE, value: true },
  ...(withLen ? [{ type: pkcs11js.CKA_VALUE_LEN, value: 32 }] : []),
  ...attrs.map(([type, value]) => ({ type, value })),
];

function run(p: Pkcs11, s: Handle, input: RawLoopInput): number {
  const gen = (attrs: Array<[number, boolean]>, token = false) =>
    p.C_GenerateKey(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, aes(attrs, true, token));
  // Like Sigil's root key: a private token object.
  const kek = gen(
    [
      [pkcs11js.CKA_WRAP, true],
      [pkcs11js.CKA_UNWRAP, true],
      [pkcs11js.CKA_EXTRACTABLE, false],
    ],
    true,
  );
  const out = Buffer.alloc(2048);
  const value = randomBytes(1024);
  const aad = valueAad({ projectId: 'p', app: 'a', secret: 's', secretId: 'i', version: 1 });
  const deadline = performance.now() + input.ms;
  let ops = 0;
  if (input.op === 'ingest') {
    while (performance.now() < deadline) {
      const dek = gen([
        [pkcs11js.CKA_ENCRYPT, true],
        [pkcs11js.CKA_EXTRACTABLE, true],
      ]);
      p.C_EncryptInit(
        s,
        {
          mechanism: pkcs11js.CKM_AES_GCM,
          parameter: { type: pkcs11js.CK_PARAMS_AES_GCM, iv: randomBytes(12), aad, ivBits: 96, tagBits: 128 } as pkcs11js.AesGCM,
        },
        dek,
      );
      p.C_Encrypt(s, value, out);
      p.C_WrapKey(s, KWP, kek, dek, Buffer.alloc(64));
      p.C_DestroyObject(s, dek);
      ops++;
    }
  } else {
    const wrap = (k: Handle) => p.C_WrapKey(s, KWP, kek, k, Buffer.alloc(64));
    const cdkKey = gen([
      [pkcs11js.CKA_WRAP, true],
      [pkcs11js.CKA_EXTRACTABLE, true],
    ]);
    const wrappedCdk = Buffer.from(wrap(cdkKey));
    const wrappedDeks = Array.from({ length: input.secretsPerCluster }, () => {
      const k = gen([[pkcs11js.CKA_EXTRACTABLE, true]]);
      return Buffer.from(wrap(k));
    });
    const unwrapTemplate = (attrs: Array<[number, boolean]>) => aes(attrs, false);
    const shared = input.shareDataKeys
      ? wrappedDeks.map((w) => p.C_UnwrapKey(s, KWP, kek, w, unwrapTemplate([[pkcs11js.CKA_EXTRACTABLE, true]])))
      : undefined;
    while (performance.now() < deadline) {
      const cdk = p.C_UnwrapKey(
        s,
        KWP,
        kek,
        wrappedCdk,
        unwrapTemplate([
          [pkcs11js.CKA_WRAP, true],
          [pkcs11js.CKA_EXTRACTABLE, true],
        ]),
      );
      if (shared) {
        for (const dek of shared) {
          p.C_WrapKey(s, KWP, cdk, dek, Buffer.alloc(64));
          ops++;
        }
      } else {
        for (const w of wrappedDeks) {
          const dek = p.C_UnwrapKey(s, KWP, kek, w, unwrapTemplate([[pkcs11js.CKA_EXTRACTABLE, true]]));
          p.C_WrapKey(s, KWP, cdk, dek, Buffer.alloc(64));
          p.C_DestroyObject(s, dek);
          ops++;
        }
      }
      p.C_DestroyObject(s, cdk);
    }
    for (const dek of shared ?? []) p.C_DestroyObject(s, dek);
  }
  p.C_DestroyObject(s, kek);
  return ops;
}

if (parentPort) {
  const input = workerData as RawLoopInput;
  const p = acquireLibrary(input.module);
  const s = p.C_OpenSession(findSlotByLabel(p, input.tokenLabel)!, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  try {
    p.C_Login(s, pkcs11js.CKU_USER, input.pin);
  } catch {
    // already logged in by another thread
  }
  const ops = run(p, s, input);
  p.C_CloseSession(s);
  parentPort.postMessage(ops);
}
