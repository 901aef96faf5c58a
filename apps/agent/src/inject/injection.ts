import type { Logger } from '@sigil/logging';
import type { Agent } from '../agent.js';
import type { KubeClient } from '../kube/kube-client.js';
import type { AgentMetrics } from '../metrics.js';
import { InjectionServer } from './injection-server.js';
import { InjectionService } from './injection-service.js';
import { createServingCertificate } from './serving-certificate.js';
import { TokenReviewer } from './token-review.js';
import { WebhookCaBundle } from './webhook-config.js';

export interface InjectionSettings {
  host: string;
  port: number;
  /** `namespace/name` of the Service in front of the port. */
  service: string | undefined;
  webhook: string | undefined;
  image: string;
  audience: string;
  url: string | undefined;
  names: string[];
  resources: Record<string, unknown> | undefined;
}

/** How often grants go to the centre: often enough for a live consumption view, rarely enough to coalesce. */
const GRANTS_EVERY_MS = 5_000;

/**
 * Injection, composed: the serving certificate (in memory), the webhook's caBundle, the
 * TokenReview-backed InjectionService over the agent's held envelopes, the TLS port, and the
 * grants sent to the centre on the Sync stream.
 */
export async function startInjection(
  settings: InjectionSettings,
  agent: Agent,
  kube: KubeClient,
  metrics: AgentMetrics,
  logger: Logger,
): Promise<{ port: number; caPem: string; stop: () => Promise<void> }> {
  const [svcNamespace, svcName] = settings.service?.split('/') ?? [];
  const serviceNames = svcName ? [`${svcName}.${svcNamespace}.svc`, `${svcName}.${svcNamespace}.svc.cluster.local`] : [];
  const cert = await createServingCertificate([...serviceNames, ...settings.names]);
  const service = new InjectionService({
    store: agent.injection,
    reviewer: new TokenReviewer(kube, settings.audience),
    open: (s) => agent.openInjected(s),
    serves: (ns) => agent.serves(ns),
    logger,
    refused: (reason) => metrics.injectionRefusals.inc({ reason }),
    granted: () => metrics.injectionGrants.inc(),
  });
  const server = new InjectionServer({
    keyPem: cert.keyPem,
    certificatePem: cert.certificatePem,
    service,
    mutation: {
      image: settings.image,
      agentUrl: settings.url ?? `https://${serviceNames[0] ?? settings.names[0]}:${svcName ? 443 : settings.port}`,
      caPem: cert.certificatePem,
      audience: settings.audience,
      ...(settings.resources ? { resources: settings.resources } : {}),
    },
    metrics,
    logger,
  });
  const port = await server.listen(settings.port, settings.host);
  const bundle = settings.webhook ? new WebhookCaBundle(kube, settings.webhook, cert.certificatePem, logger) : undefined;
  bundle?.start();
  const flush = setInterval(() => {
    const grants = service.takeGrants();
    if (!agent.sendGrants(grants)) service.returnGrants(grants);
  }, GRANTS_EVERY_MS);
  flush.unref();
  logger.info({ port, webhook: settings.webhook, notAfter: cert.notAfter.toISOString() }, 'injection serving');
  return {
    port,
    caPem: cert.certificatePem,
    stop: async () => {
      clearInterval(flush);
      bundle?.stop();
      const grants = service.takeGrants();
      agent.sendGrants(grants);
      await server.stop();
    },
  };
}
