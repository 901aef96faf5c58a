import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Inject, Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { RuntimeConfig } from '../config/runtime-config.js';
import type { ConnectionSecretContext, OaepHash, RootKeyInfo, RsaPublicKey, SealedValue, WrappedKey } from './hsm-ops.js';
import { HsmError, HsmWorkerPool } from './hsm-worker-pool.js';
import { acquireLibrary, findSlotByLabel, pkcs11js, releaseLibrary } from './pkcs11-library.js';

/** Mechanisms Sigil's envelope scheme relies on. */
const REQUIRED_MECHANISMS: Record<string, number> = {
  'AES-KEY-GEN': pkcs11js.CKM_AES_KEY_GEN,
  'AES-GCM': pkcs11js.CKM_AES_GCM,
  'AES-KEY-WRAP-PAD': pkcs11js.CKM_AES_KEY_WRAP_PAD,
  'RSA-PKCS-OAEP': pkcs11js.CKM_RSA_PKCS_OAEP,
};

export interface HsmCapabilities {
  tokenLabel: string;
  manufacturer: string;
  model: string;
  mechanisms: Record<string, boolean>;
  /** OAEP hashes the HSM accepts for wrapping; the first is used. */
  oaep: OaepHash[];
  workers: number;
}

/** An exact copy: posting a small pooled Buffer would clone the whole 8 KiB slab under it. */
const own = (b: Buffer) => new Uint8Array(b);

/** Largest batch one worker handles in one message: bounds latency of other queued work. */
const MAX_BATCH = 256;

/**
 * The control plane's only door to the HSM. Work runs in worker threads (one PKCS#11 session
 * each); this class splits large batches across them.
 */
@Injectable()
export class HsmService implements OnModuleInit, OnApplicationShutdown {
  private pool: HsmWorkerPool | undefined;
  private caps: HsmCapabilities | undefined;

  constructor(
    @Inject(RuntimeConfig) private readonly config: RuntimeConfig,
    @Inject(PinoLogger) private readonly logger: PinoLogger,
  ) {
    logger.setContext('hsm');
  }

  async onModuleInit(): Promise<void> {
    const { token, poolSize, keyLabelPrefix } = this.config.hsm;
    const pin = 'value' in token.pin ? token.pin.value : readFileSync(token.pin.file, 'utf8').trim();
    // The main thread holds the library initialised for the workers' lifetime.
    acquireLibrary(token.module);
    this.pool = new HsmWorkerPool({ module: token.module, tokenLabel: token.tokenLabel, pin, keyLabelPrefix }, poolSize);
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = publicKey.export({ format: 'jwk' });
    const probe = await this.pool.run({
      op: 'probe',
      probeKey: { modulus: Buffer.from(jwk.n!, 'base64url'), publicExponent: Buffer.from(jwk.e!, 'base64url') },
    });
    const available = new Set(probe.mechanisms);
    this.caps = {
      tokenLabel: probe.label,
      manufacturer: probe.manufacturer,
      model: probe.model,
      mechanisms: Object.fromEntries(Object.entries(REQUIRED_MECHANISMS).map(([name, m]) => [name, available.has(m)])),
      oaep: probe.oaep,
      workers: poolSize,
    };
    this.logger.info({ capabilities: this.caps }, 'HSM ready');
    if (this.config.hsm.faultInjection) this.armSessionLoss(token.module, token.tokenLabel);
    const missing = Object.entries(this.caps.mechanisms).filter(([, ok]) => !ok);
    if (missing.length > 0 || probe.oaep.length === 0) {
      throw new HsmError(
        `HSM lacks mechanisms Sigil needs: ${[...missing.map(([m]) => m), ...(probe.oaep.length ? [] : ['RSA-OAEP wrap'])].join(', ')}`,
      );
    }
  }

  /**
   * Fault injection for bench/fleet: SIGUSR2 closes every session this process has on the token
   * (the workers' too), as an HSM restart or a network HSM failover would. The workers must
   * reopen, log in again and retry without losing a request.
   */
  private armSessionLoss(module: string, label: string): void {
    this.logger.warn('SIGIL_FAULT_INJECTION=1: SIGUSR2 drops every HSM session (benchmarks only)');
    process.on('SIGUSR2', () => {
      const p = acquireLibrary(module);
      try {
        p.C_CloseAllSessions(findSlotByLabel(p, label)!);
        this.logger.warn('fault injection: every HSM session closed');
      } finally {
        releaseLibrary(module);
      }
    });
  }

  get capabilities(): HsmCapabilities {
    if (!this.caps) throw new HsmError('HSM not initialised');
    return this.caps;
  }

  /** Readiness: a worker's session answers. */
  async check(): Promise<HsmCapabilities> {
    await this.workers.run({ op: 'ping' });
    return this.capabilities;
  }

  generateRootKey(version: number): Promise<null> {
    return this.workers.run({ op: 'generateRootKey', version });
  }

  async destroyRootKey(version: number): Promise<number> {
    return (await this.workers.run({ op: 'destroyRootKey', version })).destroyed;
  }

  listRootKeys(): Promise<RootKeyInfo[]> {
    return this.workers.run({ op: 'listRootKeys' });
  }

  /** Encrypts each value under a fresh data key (AES-256-GCM, with its AAD) wrapped by root key `rootKeyVersion`. */
  seal(rootKeyVersion: number, items: Array<{ plaintext: Buffer; aad: Buffer }>): Promise<SealedValue[]> {
    return this.batched(items, (chunk) => {
      // Each value is copied into a buffer of its own and transferred: after posting, the only
      // copy is the worker's, which zeroes it when the task is done.
      const own = chunk.map((i) => ({ plaintext: new Uint8Array(i.plaintext), aad: new Uint8Array(i.aad) }));
      return this.workers.run(
        { op: 'seal', rootKeyVersion, items: own },
        own.flatMap((i) => [i.plaintext.buffer, i.aad.buffer]),
      );
    });
  }

  /**
   * Seals a database connection's admin password under the connection AAD (docs/crypto.md,
   * "Database connections"), computed by the worker from `context`. The caller zeroes `plaintext`.
   */
  sealConnectionSecret(rootKeyVersion: number, context: ConnectionSecretContext, plaintext: Buffer): Promise<SealedValue> {
    const copy = new Uint8Array(plaintext); // transferred: after posting, the worker's is the only copy
    return this.workers.run(
      {
        op: 'sealConnectionSecret',
        rootKeyVersion,
        context: { projectId: context.projectId, connectionId: context.connectionId },
        plaintext: copy,
      },
      [copy.buffer],
    );
  }

  /**
   * Opens a connection secret sealed by sealConnectionSecret for `context`; anything sealed under
   * another AAD (every secret value) fails. The caller owns the only main-thread copy and zeroes it.
   */
  openConnectionSecret(context: ConnectionSecretContext, sealed: SealedValue): Promise<Buffer> {
    return this.workers.run({
      op: 'openConnectionSecret',
      context: { projectId: context.projectId, connectionId: context.connectionId },
      sealed: {
        rootKeyVersion: sealed.rootKeyVersion,
        wrappedDek: own(sealed.wrappedDek),
        iv: own(sealed.iv),
        ciphertext: own(sealed.ciphertext),
      } as unknown as SealedValue,
    });
  }

  /** The cluster CA's EC P-256 key pair, generated in the HSM on first use. */
  ensureCaKey(): Promise<null> {
    return this.workers.run({ op: 'ensureCaKey' });
  }

  caPublicKey(): Promise<Buffer> {
    return this.workers.run({ op: 'caPublicKey' });
  }

  /** ECDSA P-256 signature (raw r || s) of a SHA-256 digest with the CA key. */
  caSign(digest: Buffer): Promise<Buffer> {
    return this.workers.run({ op: 'caSign', digest: new Uint8Array(digest) });
  }

  ensureFingerprintKey(): Promise<null> {
    return this.workers.run({ op: 'ensureFingerprintKey' });
  }

  /** HMAC-SHA256 of each value under the installation's fingerprint key (first 16 bytes, hex). */
  async fingerprint(values: Buffer[]): Promise<string[]> {
    const own = values.map((v) => new Uint8Array(v));
    const macs = await this.workers.run(
      { op: 'fingerprint', items: own },
      own.map((o) => o.buffer),
    );
    return macs.map((m) => `hmac-sha256:${m.subarray(0, 16).toString('hex')}`);
  }

  /**
   * `length` random bytes from the HSM's generator (C_GenerateRandom), for generated secrets. The
   * caller owns the only main-thread copy and zeroes it when done.
   */
  generateRandom(length: number): Promise<Buffer> {
    return this.workers.run({ op: 'generateRandom', length });
  }

  /** The audit chain's HMAC key (docs/crypto.md, "Audit log"), generated in the HSM on first use. */
  ensureAuditKey(): Promise<null> {
    return this.workers.run({ op: 'ensureAuditKey' });
  }

  /** The TLS session-ticket key (docs/crypto.md, "Agent TLS sessions"), generated in the HSM on first use. */
  ensureTicketKey(): Promise<null> {
    return this.workers.run({ op: 'ensureTicketKey' });
  }

  /** The ticket keys of one epoch, the same on every replica (48 bytes for `tls.Server.setTicketKeys`). */
  sessionTicketKeys(epoch: number): Promise<Buffer> {
    return this.workers.run({ op: 'sessionTicketKeys', epoch });
  }

  /** HMAC-SHA256 of each message under the audit key. */
  auditMac(messages: Buffer[]): Promise<Buffer[]> {
    return this.workers.run({ op: 'auditMac', items: messages.map(own) });
  }

  /** Checks each MAC under the audit key inside the HSM; large batches are spread over the workers. */
  auditVerify(items: Array<{ message: Buffer; mac: Buffer }>): Promise<boolean[]> {
    return this.batched(items, (chunk) =>
      this.workers.run({ op: 'auditVerify', items: chunk.map((i) => ({ message: own(i.message), mac: own(i.mac) })) }),
    );
  }

  /**
   * A batch of chained audit appends in one worker call (one HSM round trip for the whole group
   * commit): each record's MAC chains to the previous one's, from `prevHash`; then the new head.
   */
  auditAppendBatch(task: {
    records: Array<{ before: Buffer; after: Buffer }>;
    prevHash: Buffer;
    headPrefix: Buffer;
    previousHead: { message: Buffer; mac: Buffer } | null;
  }): Promise<{ macs: Buffer[]; headMac: Buffer | null }> {
    const prev = task.previousHead;
    return this.workers.run({
      op: 'auditAppendBatch',
      records: task.records.map((r) => ({ before: own(r.before), after: own(r.after) })),
      prevHash: own(task.prevHash),
      headPrefix: own(task.headPrefix),
      previousHead: prev ? { message: own(prev.message), mac: own(prev.mac) } : null,
    });
  }

  rewrap(kind: 'dek' | 'cdk', to: number, items: WrappedKey[]): Promise<Buffer[]> {
    return this.batched(items, (chunk) => this.workers.run({ op: 'rewrap', kind, to, items: chunk }));
  }

  createClusterKey(rootKeyVersion: number, agentKey: RsaPublicKey): Promise<{ forStorage: Buffer; forAgent: Buffer; oaep: OaepHash }> {
    const oaep = this.capabilities.oaep[0]!;
    return this.workers.run({ op: 'createClusterKey', rootKeyVersion, agentKey, oaep }).then((r) => ({ ...r, oaep }));
  }

  /** For each cluster, its data keys re-wrapped under its delivery key. */
  wrapForClusters(items: Array<{ clusterKey: WrappedKey; deks: WrappedKey[] }>): Promise<Buffer[][]> {
    return this.batched(items, (chunk) => this.workers.run({ op: 'wrapForClusters', items: chunk }));
  }

  async onApplicationShutdown(): Promise<void> {
    if (!this.pool) return;
    await this.pool.close();
    this.pool = undefined;
    releaseLibrary(this.config.hsm.token.module);
  }

  private get workers(): HsmWorkerPool {
    if (!this.pool) throw new HsmError('HSM not initialised');
    return this.pool;
  }

  /** Splits `items` evenly over the workers (at most MAX_BATCH per message), keeping order. */
  private async batched<I, O>(items: I[], run: (chunk: I[]) => Promise<O[]>): Promise<O[]> {
    if (items.length === 0) return [];
    const size = Math.min(MAX_BATCH, Math.ceil(items.length / this.workers.size));
    const chunks: I[][] = [];
    for (let i = 0; i < items.length; i += size) chunks.push(items.slice(i, i + size));
    return (await Promise.all(chunks.map(run))).flat();
  }
}
