import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { HsmToken } from '../config/sigil-config.js';
import { readOrCreateSecretFile } from '../common/secret-file.js';
import { acquireLibrary, findSlotByLabel, paddedLabel, pkcs11js, releaseLibrary } from './pkcs11-library.js';

/**
 * The development HSM: a SoftHSM token labelled `sigil` under `<data dir>/softhsm`, used
 * when no PKCS#11 variables are set. Contract (so operators can inspect it with standard
 * tools): config in `softhsm2.conf`, user PIN in `pin` (0600).
 */
export const DEV_TOKEN_LABEL = 'sigil';

const SOFTHSM_CANDIDATES = [
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/local/lib/softhsm/libsofthsm2.so',
];

export function softHsmModulePath(): string {
  const found = SOFTHSM_CANDIDATES.find((p) => existsSync(p));
  if (!found) throw new Error('SoftHSM (libsofthsm2.so) is not installed; run `make up` or set SIGIL_PKCS11_MODULE');
  return found;
}

/**
 * Creates (first run) or reuses the token in `dir`. Points SOFTHSM2_CONF at it, so this must
 * run before the PKCS#11 library is first initialised in this process.
 */
export async function ensureSoftHsmToken(dir: string, label = DEV_TOKEN_LABEL): Promise<HsmToken> {
  const tokens = path.join(dir, 'tokens');
  await mkdir(tokens, { recursive: true, mode: 0o700 });
  const conf = path.join(dir, 'softhsm2.conf');
  await writeFile(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`, {
    mode: 0o600,
  });
  const pinFile = path.join(dir, 'pin');
  const pin = await readOrCreateSecretFile(pinFile, 16);
  const soPin = await readOrCreateSecretFile(path.join(dir, 'so-pin'), 16);
  process.env.SOFTHSM2_CONF = conf;

  const module = softHsmModulePath();
  const pkcs11 = acquireLibrary(module);
  try {
    if (findSlotByLabel(pkcs11, label) === undefined) {
      const free = pkcs11.C_GetSlotList(true).find((slot) => (pkcs11.C_GetTokenInfo(slot).flags & pkcs11js.CKF_TOKEN_INITIALIZED) === 0);
      if (free === undefined) throw new Error(`SoftHSM in ${dir} has no free slot to create token "${label}"`);
      pkcs11.C_InitToken(free, soPin, paddedLabel(label));
      const slot = findSlotByLabel(pkcs11, label);
      if (slot === undefined) throw new Error(`SoftHSM token "${label}" did not appear after initialisation`);
      const session = pkcs11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
      try {
        pkcs11.C_Login(session, pkcs11js.CKU_SO, soPin);
        pkcs11.C_InitPIN(session, pin);
        pkcs11.C_Logout(session);
      } finally {
        pkcs11.C_CloseSession(session);
      }
    }
  } finally {
    releaseLibrary(module);
  }
  return { module, tokenLabel: label, pin: { file: pinFile } };
}
