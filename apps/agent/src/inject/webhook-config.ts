import type { Logger } from '@sigil/logging';
import type { KubeClient } from '../kube/kube-client.js';

interface MutatingWebhookConfiguration {
  webhooks?: Array<{ name: string; clientConfig?: { caBundle?: string } }>;
}

/**
 * Keeps the caBundle of the agent's MutatingWebhookConfiguration equal to its serving
 * certificate: at start, and every minute after (a `helm upgrade` or a person may reset it).
 * Needs get and patch on that one object (the chart's RBAC names it).
 */
export class WebhookCaBundle {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly kube: KubeClient,
    private readonly name: string,
    private readonly caPem: string,
    private readonly logger: Logger,
  ) {}

  start(): void {
    const tick = () =>
      void this.sync()
        .catch((err: unknown) =>
          this.logger.warn({ webhook: this.name, code: (err as { code?: number }).code }, 'cannot keep the webhook caBundle current'),
        )
        .finally(() => {
          this.timer = setTimeout(tick, 60_000);
          this.timer.unref();
        });
    tick();
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  /** Patches every webhook of the configuration whose caBundle differs; returns how many. */
  async sync(): Promise<number> {
    const path = `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${this.name}`;
    const config = await this.kube.request<MutatingWebhookConfiguration>('GET', path);
    const bundle = Buffer.from(this.caPem).toString('base64');
    const ops = (config.webhooks ?? []).flatMap((w, i) =>
      w.clientConfig?.caBundle === bundle
        ? []
        : [
            // The test guards against the list changing between the read and the patch.
            { op: 'test', path: `/webhooks/${i}/name`, value: w.name },
            { op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: bundle },
          ],
    );
    if (ops.length === 0) return 0;
    await this.kube.request('PATCH', path, ops, 'application/json-patch+json');
    this.logger.info({ webhook: this.name, webhooks: ops.length / 2 }, 'set the webhook caBundle to this agent’s serving certificate');
    return ops.length / 2;
  }
}
