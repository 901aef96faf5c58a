import { DeliveryMode, SecretFailureReason, type DesiredSecret, type SecretRef } from '@sigil/agent-protocol';
import { sourceOf, targetKey, type SecretSink, type SecretValues, type WriteResult } from '@sigil/agent-sync';
import type { InjectionStore } from './inject/injection-store.js';
import type { KubeSink } from './kube-sink.js';

/**
 * The agent's SecretSink, by delivery mode: env and volume secrets become Kubernetes Secrets
 * (KubeSink); inject secrets stay envelopes in memory (InjectionStore) and never become a
 * Secret. An app switched to inject has the Secret this source wrote before removed.
 */
export class DeliverySink implements SecretSink {
  constructor(
    private readonly kube: KubeSink,
    private readonly injection: InjectionStore,
    /** Whether this agent serves injection (--inject): otherwise inject secrets are reported failed. */
    private readonly injecting: boolean,
  ) {}

  serves(namespace: string): boolean {
    return this.kube.serves(namespace);
  }

  owner(target: SecretRef): Promise<string | undefined> {
    return this.kube.owner(target);
  }

  async write(s: DesiredSecret, values: SecretValues): Promise<WriteResult> {
    if (s.deliveryMode !== DeliveryMode.DELIVERY_MODE_INJECT) {
      this.injection.drop(targetKey(s.target!.namespace, s.target!.name));
      return this.kube.write(s, values);
    }
    if (!this.injecting)
      return {
        state: 'failed',
        reason: SecretFailureReason.InjectionNotServed,
        message: 'this agent runs without --inject: no pod of this cluster can receive the secret',
      };
    // Opened once so that an envelope this agent cannot open is reported now, not at a pod's
    // start; SecretSync zeroes the values when this returns.
    values.open();
    if ((await this.kube.owner(s.target!)) === sourceOf(s)) await this.kube.delete(s.target!);
    const changed = this.injection.hold(s);
    return { state: 'applied', changed };
  }

  async listManaged(): Promise<SecretRef[]> {
    const refs = new Map<string, SecretRef>();
    for (const r of [...(await this.kube.listManaged()), ...this.injection.targets()]) refs.set(targetKey(r.namespace, r.name), r);
    return [...refs.values()];
  }

  async delete(target: SecretRef): Promise<'deleted' | 'absent' | 'conflict'> {
    const dropped = this.injection.drop(targetKey(target.namespace, target.name));
    const outcome = await this.kube.delete(target);
    return dropped ? 'deleted' : outcome;
  }
}
