import pkcs11js from 'pkcs11js';

/**
 * The PKCS#11 library is process-global state: C_Initialize may run once per module path
 * until C_Finalize. Every user of a module (the session pool, the dev-token initialiser)
 * borrows it through here, reference-counted.
 */
interface Loaded {
  pkcs11: pkcs11js.PKCS11;
  refs: number;
  /** false when another part of the process (e.g. the main thread, for a worker) initialised it */
  owned: boolean;
}

const loaded = new Map<string, Loaded>();

export type Pkcs11 = pkcs11js.PKCS11;
export type Handle = pkcs11js.Handle;
export { pkcs11js };

export function acquireLibrary(modulePath: string): Pkcs11 {
  const existing = loaded.get(modulePath);
  if (existing) {
    existing.refs += 1;
    return existing.pkcs11;
  }
  const pkcs11 = new pkcs11js.PKCS11();
  try {
    pkcs11.load(modulePath);
  } catch (err) {
    throw new Error(`cannot load PKCS#11 module ${modulePath}: ${(err as Error).message}`, { cause: err });
  }
  // OS locking: the library is called from several threads (HSM workers).
  let owned = true;
  try {
    pkcs11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (err) {
    if (ckr(err) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') throw err;
    owned = false; // initialised by another thread of this process; it finalises, not us
  }
  loaded.set(modulePath, { pkcs11, refs: 1, owned });
  return pkcs11;
}

export function releaseLibrary(modulePath: string): void {
  const entry = loaded.get(modulePath);
  if (!entry) return;
  entry.refs -= 1;
  if (entry.refs > 0) return;
  loaded.delete(modulePath);
  if (entry.owned) entry.pkcs11.C_Finalize();
}

/** The CKR_* name of a PKCS#11 error, if it is one. */
export function ckr(err: unknown): string | undefined {
  if (err instanceof pkcs11js.Pkcs11Error) return /CKR_[A-Z_]+/.exec(err.message)?.[0];
  return undefined;
}

/** Finds the slot whose token carries `label` (labels are blank-padded to 32 bytes). */
export function findSlotByLabel(pkcs11: Pkcs11, label: string): Handle | undefined {
  for (const slot of pkcs11.C_GetSlotList(true)) {
    if (tokenLabel(pkcs11.C_GetTokenInfo(slot)) === label) return slot;
  }
  return undefined;
}

/** A token's label without the blank (or, from some initialisers, NUL) padding. */
export function tokenLabel(info: pkcs11js.TokenInfo): string {
  return info.label.replace(/[\s\0]+$/, '');
}

/** PKCS#11 labels are fixed 32-byte fields padded with blanks. */
export function paddedLabel(label: string): string {
  if (Buffer.byteLength(label) > 32) throw new Error(`token label "${label}" is longer than 32 bytes`);
  return label + ' '.repeat(32 - Buffer.byteLength(label));
}
