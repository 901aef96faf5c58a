import type { DesiredSecret, SecretRef } from '@sigil/agent-protocol';
import { sourceOf, targetKey, type SecretSink, type SecretValues, type WriteResult } from '@sigil/agent-sync';
import type { Logger } from '@sigil/logging';
import type { KubeSecrets } from './kube-secrets.js';

/**
 * The agent's SecretSink: Kubernetes Secrets through KubeSecrets (ownership by
 * `sigil.dev/source`, the hand-over, only the namespaces served). It remembers the
 * resourceVersion of every Secret as it last wrote or verified it, which lets a write skip
 * decrypting and lets the drift watch tell its own writes from anyone else's.
 */
export class KubeSink implements SecretSink {
  /** resourceVersion of each Secret (`namespace/name`) as this agent last wrote or verified it. */
  readonly written = new Map<string, string>();

  constructor(
    private readonly secrets: KubeSecrets,
    private readonly namespaces: string[] | undefined,
    private readonly clusterId: () => string,
    private readonly logger: Logger,
    /** Called before each write: that target is being checked now. */
    private readonly checking: (k: string) => void,
  ) {}

  serves(namespace: string): boolean {
    return this.secrets.serves(namespace);
  }

  owner(target: SecretRef): Promise<string | undefined> {
    return this.secrets.owner(target.namespace, target.name);
  }

  async write(s: DesiredSecret, values: SecretValues): Promise<WriteResult> {
    const target = s.target!;
    const k = targetKey(target.namespace, target.name);
    this.checking(k);
    const outcome = await this.secrets.write(
      {
        namespace: target.namespace,
        name: target.name,
        type: s.type,
        app: s.app,
        source: sourceOf(s),
        clusterId: this.clusterId(),
        ownerRetired: values.ownerRetired,
        secretId: s.secretId,
        version: s.version,
        generation: s.generation,
        envelope: s.envelope,
        open: values.open,
      },
      this.written.get(k),
    );
    if (outcome.state === 'conflict') {
      this.written.delete(k);
      this.logger.warn({ target: k, holder: outcome.holder }, 'a Secret with this name is not this source’s; left alone');
      return {
        state: 'conflict',
        message: outcome.holder === 'unmanaged' ? 'an unmanaged Secret has this name' : 'another Sigil secret owns this Secret',
      };
    }
    if (outcome.state === 'failed') return outcome;
    if (outcome.resourceVersion) this.written.set(k, outcome.resourceVersion);
    return { state: 'applied', changed: outcome.changed };
  }

  listManaged(): Promise<SecretRef[]> {
    return this.secrets.listManaged(this.namespaces);
  }

  async delete(target: SecretRef): Promise<'deleted' | 'absent' | 'conflict'> {
    const outcome = await this.secrets.delete(target.namespace, target.name, this.clusterId());
    this.written.delete(targetKey(target.namespace, target.name));
    return outcome;
  }
}
