import type { DesiredSecret, SecretFailureReason, SecretRef } from '@sigil/agent-protocol';
import { sourceOf, targetKey } from './ownership.js';
import type { SecretSink, SecretValues, WriteResult } from './secret-sync.js';

/** One Secret as the in-memory sink holds it. */
export interface MemorySecret {
  namespace: string;
  name: string;
  source: string;
  secretId: string;
  version: number;
  generation: bigint;
  /** The envelope it was written from: the same one again is unchanged without decrypting. */
  envelope: Buffer;
  /** The values as UTF-8 strings, only with `keepValues` (tests); otherwise decrypted and dropped. */
  values: Record<string, string> | undefined;
}

export interface MemorySinkOptions {
  /** Keep the decrypted values (the test agent returns them); the bench only proves they open. */
  keepValues?: boolean;
  /** A reason to fail the write of a target (`namespace/name`), or undefined to write it. */
  fail?(target: string): SecretFailureReason | undefined;
}

/**
 * An in-memory stand-in for Kubernetes with its ownership rule: a Secret belongs to one source;
 * another source's is a conflict unless its owner is retired (the hand-over).
 */
export class MemorySink implements SecretSink {
  readonly secrets = new Map<string, MemorySecret>();

  constructor(private readonly opts: MemorySinkOptions = {}) {}

  write(s: DesiredSecret, values: SecretValues): Promise<WriteResult> {
    const t = s.target!;
    const k = targetKey(t.namespace, t.name);
    const failure = this.opts.fail?.(k);
    if (failure) return Promise.resolve({ state: 'failed', reason: failure, message: 'failed by the test' });
    const existing = this.secrets.get(k);
    const source = sourceOf(s);
    if (existing && existing.source !== source && !values.ownerRetired(existing.source))
      return Promise.resolve({ state: 'conflict', message: 'another Sigil secret owns this Secret' });
    if (existing && existing.source === source && existing.envelope.equals(s.envelope))
      return Promise.resolve({ state: 'applied', changed: false });
    // Decrypt as a real write does, even when the values are not kept.
    const opened = values.open();
    const kept = this.opts.keepValues ? Object.fromEntries([...opened].map(([name, v]) => [name, v.toString('utf8')])) : undefined;
    this.secrets.set(k, {
      namespace: t.namespace,
      name: t.name,
      source,
      secretId: s.secretId,
      version: s.version,
      generation: s.generation,
      envelope: s.envelope,
      values: kept,
    });
    return Promise.resolve({ state: 'applied', changed: true });
  }

  listManaged(): Promise<SecretRef[]> {
    return Promise.resolve([...this.secrets.values()].map((s) => ({ namespace: s.namespace, name: s.name })));
  }

  delete(target: SecretRef): Promise<'deleted' | 'absent'> {
    return Promise.resolve(this.secrets.delete(targetKey(target.namespace, target.name)) ? 'deleted' : 'absent');
  }
}
