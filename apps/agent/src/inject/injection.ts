import { X509Certificate } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from '@sigil/logging';
import type { Agent } from '../agent.js';
import type { KubeClient } from '../kube/kube-client.js';
import type { AgentMetrics } from '../metrics.js';
import { InjectionServer } from './injection-server.js';
import { InjectionService } from './injection-service.js';
import { cachedOpener, InjectionCache } from './injection-cache.js';
import { createServingAuthority, issueServingCertificate, renewalAt, type KeyAndCertificate } from './serving-certificate.js';
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
  /** The sealed injection cache for offline restarts (both or neither). */
  cacheDir: string | undefined;
  cacheKeyFile: string | undefined;
  /** A cache sealed longer ago is not served (an agent cut off for that long stops injecting). */
  cacheMaxAgeMs: number;
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
  const cache = settings.cacheDir && settings.cacheKeyFile ? new InjectionCache(settings.cacheDir, settings.cacheKeyFile) : undefined;
  const cached = await cache?.load(agent.clusterName, settings.cacheMaxAgeMs).catch((err: unknown) => {
    logger.warn({ error: (err as Error).message }, 'cannot open the injection cache; starting without it');
    return undefined;
  });
  if (cached) {
    agent.restoreInjected(cached.entries, cachedOpener(cached));
    logger.info({ secrets: cached.entries.length }, 'restored inject-mode secrets from the injection cache');
  }
  const names = [...serviceNames, ...settings.names];
  // The cached authority is kept while it has a month left: pods started before trust it.
  const reusable =
    cached?.authority && new Date(new X509Certificate(cached.authority.certificatePem).validTo).getTime() - Date.now() > 30 * 86_400_000;
  const authority = reusable ? cached.authority! : await createServingAuthority(names);
  let cert: KeyAndCertificate = await issueServingCertificate(authority, names);
  if (cache) {
    // Saves and the clear on revocation run one after another, so a save in flight cannot bring
    // back a cache that was just deleted.
    let chain = Promise.resolve();
    let saved = '';
    let revoked = false;
    const then = (step: () => Promise<void>) => {
      chain = chain.then(step).catch((err: unknown) => {
        saved = '';
        logger.warn({ error: (err as Error).message }, 'cannot write or clear the injection cache');
      });
    };
    agent.onRevoked(() => {
      revoked = true;
      saved = '';
      then(() => cache.clear());
    });
    agent.onApplied((state, identity) => {
      revoked = false;
      const entries = agent.injection.entries();
      const stamp = [
        identity.clusterId,
        ...state.clusterKeyEnvelopes.map((e) => e.toString('base64')),
        ...entries.map((e) => `${e.secretId}@${e.version}#${e.generation}`),
      ].join('|');
      if (stamp === saved) return;
      saved = stamp;
      then(() =>
        revoked
          ? Promise.resolve()
          : cache.save({
              cluster: agent.clusterName,
              deliveryPrivateKeyPem: identity.deliveryPrivateKeyPem,
              clusterKeyEnvelopes: [...state.clusterKeyEnvelopes],
              entries,
              authority: { keyPem: authority.keyPem, certificatePem: authority.certificatePem },
            }),
      );
    });
  }
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
      // The chart's Service listens on the agent's own port.
      agentUrl: settings.url ?? `https://${serviceNames[0] ?? settings.names[0]}:${settings.port}`,
      caPem: authority.certificatePem,
      audience: settings.audience,
      ...(settings.resources ? { resources: settings.resources } : {}),
    },
    metrics,
    logger,
  });
  const port = await server.listen(settings.port, settings.host);
  const bundle = settings.webhook ? new WebhookCaBundle(kube, settings.webhook, authority.certificatePem, logger) : undefined;
  bundle?.start();
  // The serving certificate is renewed in place at two thirds of its life; the trust stays.
  const renewal = new AbortController();
  void (async () => {
    for (;;) {
      const renewAt = renewalAt(new Date(new X509Certificate(cert.certificatePem).validFrom), cert.notAfter).getTime();
      // Timers hold at most 2^31-1 ms: wake daily and look again.
      await delay(Math.max(0, Math.min(renewAt - Date.now(), 86_400_000)), undefined, { signal: renewal.signal, ref: false });
      if (Date.now() < renewAt) continue;
      try {
        cert = await issueServingCertificate(authority, names);
        server.useCertificate(cert.keyPem, cert.certificatePem);
        logger.info({ notAfter: cert.notAfter.toISOString() }, 'renewed the injection port’s serving certificate');
      } catch (err) {
        logger.warn({ error: (err as Error).message }, 'cannot renew the injection port’s serving certificate; trying again in an hour');
        await delay(3_600_000, undefined, { signal: renewal.signal, ref: false });
      }
    }
  })().catch(() => undefined); // aborted at stop
  const flush = setInterval(() => {
    const grants = service.takeGrants();
    if (!agent.sendGrants(grants)) service.returnGrants(grants);
  }, GRANTS_EVERY_MS);
  flush.unref();
  logger.info({ port, webhook: settings.webhook, cache: settings.cacheDir }, 'injection serving');
  return {
    port,
    caPem: authority.certificatePem,
    stop: async () => {
      renewal.abort();
      clearInterval(flush);
      bundle?.stop();
      const grants = service.takeGrants();
      agent.sendGrants(grants);
      await server.stop();
    },
  };
}
