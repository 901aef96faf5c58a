import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DesiredSecret } from '@sigil/agent-protocol';
import { openDesiredSecret } from '@sigil/agent-sync';
import { openClusterKeyEnvelope } from '@sigil/envelope';

/** What an agent needs to serve injections after a restart while the control plane is unreachable. */
export interface CachedInjection {
  cluster: string;
  /** The delivery key that opens `clusterKeyEnvelopes` (the enrollment the entries came with). */
  deliveryPrivateKeyPem: string;
  clusterKeyEnvelopes: Buffer[];
  entries: DesiredSecret[];
  /** The injection port's authority (key and certificate), kept so that pods and the webhook that trust it keep working across restarts. */
  authority: { keyPem: string; certificatePem: string } | undefined;
  /** When it was sealed (load refuses a cache older than its maximum age). */
  sealedAt?: Date;
}

const FILE = 'injection-cache.sgc';
const MAGIC = Buffer.from('SGC1');
const KEY_BYTES = 32;

/**
 * The injection cache (`--inject-cache-dir`): the last inject entries, the cluster-key envelopes
 * and the delivery key that opens them, and the injection port's authority, sealed with AES-256-GCM
 * under the key in `--inject-cache-key-file`, which must not be in etcd (a hostPath or a CSI
 * volume on the node; created 0600 if missing). Format: "SGC1" ‖ iv(12) ‖ ciphertext ‖ tag(16),
 * AAD "sigil-injection-cache-v1|<cluster>". Whoever has both the file and the key has what the
 * agent has; with the file alone, nothing (docs/crypto.md).
 */
export class InjectionCache {
  private key: Buffer | undefined;

  constructor(
    private readonly dir: string,
    private readonly keyFile: string,
  ) {}

  /** The cache, unless absent or sealed longer than `maxAgeMs` ago (then it is deleted). */
  async load(cluster: string, maxAgeMs = Number.POSITIVE_INFINITY): Promise<CachedInjection | undefined> {
    let sealed: Buffer;
    try {
      sealed = await readFile(path.join(this.dir, FILE));
    } catch {
      return undefined;
    }
    if (!sealed.subarray(0, 4).equals(MAGIC) || sealed.length < 4 + 12 + 16) throw new Error('the injection cache is not an SGC1 file');
    const key = await this.cacheKey();
    const d = createDecipheriv('aes-256-gcm', key, sealed.subarray(4, 16));
    d.setAAD(aad(cluster));
    d.setAuthTag(sealed.subarray(sealed.length - 16));
    const plain = Buffer.concat([d.update(sealed.subarray(16, sealed.length - 16)), d.final()]);
    try {
      const j = JSON.parse(plain.toString('utf8')) as {
        cluster: string;
        deliveryPrivateKeyPem: string;
        clusterKeyEnvelopes: string[];
        entries: string[];
        authority?: { keyPem: string; certificatePem: string };
        sealedAt?: string;
      };
      const sealedAt = new Date(j.sealedAt ?? 0);
      if (!(Date.now() - sealedAt.getTime() <= maxAgeMs)) {
        await this.clear();
        return undefined;
      }
      return {
        sealedAt,
        cluster: j.cluster,
        deliveryPrivateKeyPem: j.deliveryPrivateKeyPem,
        clusterKeyEnvelopes: j.clusterKeyEnvelopes.map((e) => Buffer.from(e, 'base64')),
        entries: j.entries.map((e) => DesiredSecret.decode(Buffer.from(e, 'base64'))),
        authority: j.authority,
      };
    } finally {
      plain.fill(0);
    }
  }

  async save(c: CachedInjection): Promise<void> {
    const plain = Buffer.from(
      JSON.stringify({
        cluster: c.cluster,
        deliveryPrivateKeyPem: c.deliveryPrivateKeyPem,
        clusterKeyEnvelopes: c.clusterKeyEnvelopes.map((e) => e.toString('base64')),
        entries: c.entries.map((e) => Buffer.from(DesiredSecret.encode(e).finish()).toString('base64')),
        authority: c.authority,
        sealedAt: new Date().toISOString(),
      }),
    );
    try {
      const key = await this.cacheKey();
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(aad(c.cluster));
      const sealed = Buffer.concat([MAGIC, iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      const tmp = path.join(this.dir, `.${FILE}.tmp`);
      await writeFile(tmp, sealed, { mode: 0o600 });
      await rename(tmp, path.join(this.dir, FILE));
    } finally {
      plain.fill(0);
    }
  }

  /** Removes the cache (the cluster was disabled: nothing may be served from it after a restart). */
  async clear(): Promise<void> {
    await rm(path.join(this.dir, FILE), { force: true });
  }

  private async cacheKey(): Promise<Buffer> {
    if (this.key) return this.key;
    let key = await readFile(this.keyFile).catch(() => undefined);
    if (!key) {
      await mkdir(path.dirname(this.keyFile), { recursive: true, mode: 0o700 });
      await writeFile(this.keyFile, randomBytes(KEY_BYTES), { mode: 0o600, flag: 'wx' }).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
      key = await readFile(this.keyFile);
    }
    if (key.length !== KEY_BYTES) throw new Error(`--inject-cache-key-file must hold ${KEY_BYTES} bytes`);
    this.key = key;
    return key;
  }
}

const aad = (cluster: string) => Buffer.from(`sigil-injection-cache-v1|${cluster}`);

/** Opens cached entries with the cached delivery key (until the first live state replaces them). */
export function cachedOpener(c: CachedInjection): (s: DesiredSecret) => Map<string, Buffer> {
  const keys = new Map<number, Buffer>();
  for (const e of c.clusterKeyEnvelopes) {
    const k = openClusterKeyEnvelope(c.deliveryPrivateKeyPem, e);
    keys.set(k.version, k.key);
  }
  return (s) => openDesiredSecret(s, keys);
}
