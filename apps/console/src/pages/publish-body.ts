import type { Schemas } from '../api/client';
import { KeyValueError, parseKeyValues } from '../ui/key-values';

/**
 * What the publish dialog sends (and previews): "eu-1, eu-2" → cluster names; "region=eu-west,
 * tier=store" → a matchLabels selector; either or both. An error to show instead when neither
 * is given or a label is not key=value.
 */
export function publishBody(names: string, labels: string): Schemas['PublishDto'] | { error: string } {
  const clusters = names.split(/[\s,]+/).filter(Boolean);
  let matchLabels: Record<string, string>;
  try {
    matchLabels = parseKeyValues(labels);
  } catch (err) {
    if (err instanceof KeyValueError) return { error: err.message };
    throw err;
  }
  const body: Schemas['PublishDto'] = {};
  if (clusters.length) body.clusters = clusters;
  if (Object.keys(matchLabels).length) body.selector = { matchLabels };
  if (!body.clusters && !body.selector) return { error: 'Name clusters or give labels to match' };
  return body;
}
