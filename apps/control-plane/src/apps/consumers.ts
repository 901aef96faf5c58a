import { MAX_APP_CONSUMERS } from '@sigil/agent-protocol';
import { dns1123LabelProblem, dns1123SubdomainProblem } from '../common/kubernetes-names.js';
import type { AppConsumer, DeliveryMode } from './app.entity.js';
import { AppsError, AppsErrorCode } from './apps.errors.js';

export { MAX_APP_CONSUMERS };

/** A service account of `*` stands for every service account of the namespace. */
export const ANY_SERVICE_ACCOUNT = '*';

/**
 * What is wrong with a `consumers` field, if anything: an array of at most MAX_APP_CONSUMERS
 * `{namespace, serviceAccount}` objects (a DNS-1123 label; a DNS-1123 subdomain or `*`), no
 * other keys, none twice. The shape only: whether the app needs any is the service's rule.
 */
export function consumersProblem(v: unknown): string | undefined {
  if (!Array.isArray(v)) return 'must be an array of {namespace, serviceAccount}';
  if (v.length > MAX_APP_CONSUMERS) return `must have at most ${MAX_APP_CONSUMERS} entries`;
  const seen = new Set<string>();
  for (const [i, c] of v.entries()) {
    if (c === null || typeof c !== 'object' || Array.isArray(c)) return `[${i}] must be an object {namespace, serviceAccount}`;
    const extra = Object.keys(c as object).find((k) => k !== 'namespace' && k !== 'serviceAccount');
    if (extra !== undefined) return `[${i}] has an unknown field ${JSON.stringify(extra.slice(0, 80))}`;
    const { namespace, serviceAccount } = c as Record<string, unknown>;
    if (typeof namespace !== 'string') return `[${i}].namespace must be a string`;
    const np = dns1123LabelProblem(namespace);
    if (np) return `[${i}].namespace ${np}`;
    if (typeof serviceAccount !== 'string') return `[${i}].serviceAccount must be a string`;
    const sp = serviceAccount === ANY_SERVICE_ACCOUNT ? undefined : dns1123SubdomainProblem(serviceAccount);
    if (sp) return `[${i}].serviceAccount ${sp} (or is "*" for any service account)`;
    const key = `${namespace}/${serviceAccount}`;
    if (seen.has(key)) return `[${i}] repeats ${key}`;
    seen.add(key);
  }
  return undefined;
}

/** An inject app is useless without consumers: no pod could receive its values. */
export function checkConsumers(mode: DeliveryMode, consumers: readonly AppConsumer[]): void {
  if (mode === 'inject' && consumers.length === 0) {
    throw new AppsError(
      AppsErrorCode.ConsumersRequired,
      'delivery mode inject needs at least one consumer {namespace, serviceAccount} (serviceAccount "*" for any of the namespace)',
      { details: [{ field: 'consumers', problem: 'must not be empty when deliveryMode is inject' }] },
    );
  }
}

/** The consumers as stored: only the two fields, in the order given. */
export const normalizeConsumers = (v: readonly AppConsumer[]): AppConsumer[] =>
  v.map((c) => ({ namespace: c.namespace, serviceAccount: c.serviceAccount }));
