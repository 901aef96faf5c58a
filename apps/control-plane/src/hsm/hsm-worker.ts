import { parentPort, workerData } from 'node:worker_threads';
import { acquireLibrary, ckr, findSlotByLabel, pkcs11js, tokenLabel, type Handle } from './pkcs11-library.js';
import * as ops from './hsm-ops.js';
import type { HsmRequest, HsmResponse, HsmTask, HsmWorkerConfig } from './hsm-tasks.js';

/**
 * One HSM worker thread: one PKCS#11 session, one task at a time, synchronous calls. A whole
 * batch (say, the envelopes of 200 clusters) costs one message round trip instead of one
 * thread-pool hop per PKCS#11 call, which is what makes the HSM rate reachable from Node.
 */

/** After these, the session (or its login, or our cached key handles) is gone: rebuild and retry once. */
const RECOVERABLE = new Set([
  'CKR_SESSION_HANDLE_INVALID',
  'CKR_SESSION_CLOSED',
  'CKR_USER_NOT_LOGGED_IN',
  'CKR_TOKEN_NOT_PRESENT',
  'CKR_DEVICE_REMOVED',
  'CKR_OBJECT_HANDLE_INVALID',
  'CKR_KEY_HANDLE_INVALID',
  'CKR_WRAPPING_KEY_HANDLE_INVALID',
  'CKR_UNWRAPPING_KEY_HANDLE_INVALID',
  'CKR_CRYPTOKI_NOT_INITIALIZED',
]);

const config = workerData as HsmWorkerConfig;
const p = acquireLibrary(config.module);
const roots = new ops.RootKeyHandles(p, config.keyLabelPrefix);
let session: Handle | undefined;
let fingerprintKey: Handle | undefined;
let caKey: Handle | undefined;
let auditKey: Handle | undefined;
let ticketKey: Handle | undefined;

function open(): Handle {
  const slot = findSlotByLabel(p, config.tokenLabel);
  if (slot === undefined) throw new Error(`no PKCS#11 token labelled "${config.tokenLabel}"`);
  const s = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  try {
    p.C_Login(s, pkcs11js.CKU_USER, config.pin);
  } catch (err) {
    if (ckr(err) !== 'CKR_USER_ALREADY_LOGGED_IN') {
      p.C_CloseSession(s);
      throw err;
    }
  }
  return s;
}

function reset(): void {
  roots.clear();
  fingerprintKey = undefined;
  caKey = undefined;
  auditKey = undefined;
  ticketKey = undefined;
  if (session !== undefined) {
    try {
      p.C_CloseSession(session);
    } catch {
      // already gone
    }
  }
  session = undefined;
}

const buf = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

function execute(s: Handle, task: HsmTask): unknown {
  const root = (version: number) => roots.get(s, version);
  switch (task.op) {
    case 'ping':
      return { slotState: p.C_GetSessionInfo(s).state };
    case 'probe': {
      const slot = findSlotByLabel(p, config.tokenLabel)!;
      const info = p.C_GetTokenInfo(slot);
      return {
        mechanisms: p.C_GetMechanismList(slot),
        oaep: ops.probeOaep(p, s, { modulus: buf(task.probeKey.modulus), publicExponent: buf(task.probeKey.publicExponent) }),
        label: tokenLabel(info),
        manufacturer: info.manufacturerID.trim(),
        model: info.model.trim(),
      };
    }
    case 'generateRootKey':
      ops.generateRootKey(p, s, config.keyLabelPrefix, task.version);
      return null;
    case 'destroyRootKey':
      roots.clear();
      return { destroyed: ops.destroyRootKey(p, s, config.keyLabelPrefix, task.version) };
    case 'listRootKeys':
      return ops.listRootKeys(p, s, config.keyLabelPrefix);
    case 'ensureFingerprintKey':
      ops.ensureFingerprintKey(p, s, config.keyLabelPrefix);
      return null;
    case 'ensureCaKey':
      ops.ensureCaKey(p, s, config.keyLabelPrefix);
      return null;
    case 'ensureAuditKey':
      ops.ensureAuditKey(p, s, config.keyLabelPrefix);
      return null;
    case 'ensureTicketKey':
      ops.ensureTicketKey(p, s, config.keyLabelPrefix);
      return null;
    case 'sessionTicketKeys': {
      const key = (ticketKey ??= ops.findTicketKey(p, s, config.keyLabelPrefix));
      return ops.sessionTicketKeys(p, s, key, task.epoch);
    }
    case 'auditMac': {
      const key = (auditKey ??= ops.findAuditKey(p, s, config.keyLabelPrefix));
      return task.items.map((m) => ops.hmac(p, s, key, buf(m)));
    }
    case 'auditVerify': {
      const key = (auditKey ??= ops.findAuditKey(p, s, config.keyLabelPrefix));
      return task.items.map((i) => ops.hmacVerify(p, s, key, buf(i.message), buf(i.mac)));
    }
    case 'auditAppendBatch': {
      const key = (auditKey ??= ops.findAuditKey(p, s, config.keyLabelPrefix));
      const prev = task.previousHead;
      return ops.auditAppendBatch(p, s, key, {
        records: task.records.map((r) => ({ before: buf(r.before), after: buf(r.after) })),
        prevHash: buf(task.prevHash),
        headPrefix: buf(task.headPrefix),
        previousHead: prev ? { message: buf(prev.message), mac: buf(prev.mac) } : null,
      });
    }
    case 'caPublicKey':
      return ops.caPublicKey(p, s, config.keyLabelPrefix);
    case 'caSign':
      caKey ??= ops.findCaPrivateKey(p, s, config.keyLabelPrefix);
      return ops.ecdsaSign(p, s, caKey, buf(task.digest));
    case 'fingerprint': {
      fingerprintKey ??= ops.findFingerprintKey(p, s, config.keyLabelPrefix);
      const key = fingerprintKey;
      return task.items.map((item) => ops.hmac(p, s, key, buf(item)));
    }
    case 'generateRandom':
      return ops.generateRandom(p, s, task.length);
    case 'seal': {
      const handle = root(task.rootKeyVersion);
      return task.items.map(({ plaintext, aad }) => ops.seal(p, s, handle, task.rootKeyVersion, buf(plaintext), buf(aad)));
    }
    // The connection AAD is computed here from the context, never taken from the caller: these
    // two tasks can seal and open connection secrets and nothing else.
    case 'sealConnectionSecret':
      return ops.seal(p, s, root(task.rootKeyVersion), task.rootKeyVersion, buf(task.plaintext), ops.connectionAad(task.context));
    case 'openConnectionSecret': {
      const sealed = task.sealed;
      return ops.openConnectionSecret(
        p,
        s,
        root(sealed.rootKeyVersion),
        {
          rootKeyVersion: sealed.rootKeyVersion,
          wrappedDek: buf(sealed.wrappedDek),
          iv: buf(sealed.iv),
          ciphertext: buf(sealed.ciphertext),
        },
        task.context,
      );
    }
    case 'rewrap': {
      const to = root(task.to);
      return task.items.map((k) => ops.rewrap(p, s, root(k.rootKeyVersion), to, buf(k.wrapped), task.kind));
    }
    case 'createClusterKey':
      return ops.createClusterKey(
        p,
        s,
        root(task.rootKeyVersion),
        { modulus: buf(task.agentKey.modulus), publicExponent: buf(task.agentKey.publicExponent) },
        task.oaep,
      );
    case 'wrapForClusters':
      return ops.wrapForClusters(
        p,
        s,
        root,
        task.items.map(({ clusterKey, deks }) => ({
          clusterKey: { rootKeyVersion: clusterKey.rootKeyVersion, wrapped: buf(clusterKey.wrapped) },
          deks: deks.map((d) => ({ rootKeyVersion: d.rootKeyVersion, wrapped: buf(d.wrapped) })),
        })),
      );
  }
}

function handle(task: HsmTask): unknown {
  for (let attempt = 0; ; attempt++) {
    try {
      session ??= open();
      return execute(session, task);
    } catch (err) {
      const code = ckr(err);
      if (attempt === 0 && code !== undefined && RECOVERABLE.has(code)) {
        reset();
        continue;
      }
      throw err;
    }
  }
}

parentPort!.on('message', ({ id, task }: HsmRequest) => {
  let response: HsmResponse;
  const transfer: ArrayBuffer[] = [];
  try {
    const result = handle(task);
    response = { id, ok: true, result: detach(result, transfer) };
    // Random bytes become secret values, an opened connection secret is one: the transferred copy is the only one left.
    if ((task.op === 'generateRandom' || task.op === 'openConnectionSecret') && result instanceof Uint8Array) result.fill(0);
  } catch (err) {
    // PKCS#11 errors carry only a CKR code and the function name: nothing of the data.
    const code = ckr(err);
    response = {
      id,
      ok: false,
      error: { message: code ?? (err instanceof Error ? err.message : String(err)), ...(code ? { ckr: code } : {}) },
    };
  } finally {
    // This thread's copies of the values; only after the task is done, as a retry re-reads them.
    if (task.op === 'seal') for (const item of task.items) item.plaintext.fill(0);
    if (task.op === 'sealConnectionSecret') task.plaintext.fill(0);
    if (task.op === 'fingerprint') for (const item of task.items) item.fill(0);
  }
  parentPort!.postMessage(response, transfer);
});

/**
 * Copies each result buffer into an ArrayBuffer of its own and transfers it: posting a small
 * Buffer would otherwise clone the whole 8 KiB pool slab it lives in.
 */
function detach(value: unknown, transfer: ArrayBuffer[]): unknown {
  if (value instanceof Uint8Array) {
    const own = new Uint8Array(value);
    transfer.push(own.buffer);
    return own;
  }
  if (Array.isArray(value)) return value.map((v) => detach(v, transfer));
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, detach(v, transfer)]));
  return value;
}
