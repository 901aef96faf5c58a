// Where an app is published, in words: "store-a, store-b · every cluster with tier=store · except
// store-c". Selectors read the way kubectl writes them (tier=store, region in (eu,us), !legacy).
import type { Schemas } from '../api/client';

type Placement = Schemas['PlacementView'];
interface Selector {
  matchLabels?: Record<string, string>;
  matchExpressions?: Array<{ key: string; operator: string; values?: string[] }>;
}

/** At most this many names are listed; the rest are counted. */
const NAMES_SHOWN = 10;

export function namesText(names: string[]): string {
  if (names.length <= NAMES_SHOWN) return names.join(', ');
  return `${names.slice(0, NAMES_SHOWN).join(', ')} and ${names.length - NAMES_SHOWN} more`;
}

export function selectorText(s: Selector): string {
  const parts = Object.entries(s.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of s.matchExpressions ?? []) {
    const values = `(${(e.values ?? []).join(',')})`;
    if (e.operator === 'In') parts.push(`${e.key} in ${values}`);
    else if (e.operator === 'NotIn') parts.push(`${e.key} notin ${values}`);
    else if (e.operator === 'Exists') parts.push(e.key);
    else if (e.operator === 'DoesNotExist') parts.push(`!${e.key}`);
    else parts.push(`${e.key} ${e.operator} ${values}`);
  }
  return parts.length ? parts.join(',') : 'any labels';
}

/** The parts of the sentence, or null when the app is published nowhere. */
export function placementParts(p: Placement): { targets: string[]; except: string | null } | null {
  const targets = [
    ...(p.clusters.length ? [namesText(p.clusters)] : []),
    ...(p.selectors as Selector[]).map((s) => `every cluster with ${selectorText(s)}`),
  ];
  if (!targets.length) return null;
  return { targets, except: p.excluded.length ? namesText(p.excluded) : null };
}
