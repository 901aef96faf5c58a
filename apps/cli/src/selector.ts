import type { LabelSelector } from '@sigil/kubernetes';
import { InvalidArgumentError } from 'commander';

export type { LabelSelector };

/**
 * kubectl-style selectors: `tier=store,region!=us-east,canary,!legacy,region in (eu-west,eu-north)`.
 * The server validates label syntax; this only gives the expression its shape.
 */
export function parseSelector(raw: string): LabelSelector {
  const matchLabels: Record<string, string> = {};
  const matchExpressions: NonNullable<LabelSelector['matchExpressions']> = [];
  const parts = raw.match(/[^,(]+(\([^)]*\))?/g) ?? [];
  for (const part of parts.map((p) => p.trim()).filter(Boolean)) {
    let m: RegExpExecArray | null;
    if ((m = /^([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(part))) {
      const values = m[3]!
        .split(',')
        .map((v) => v.trim())
        .filter(Boolean);
      matchExpressions.push({ key: m[1]!, operator: m[2] === 'in' ? 'In' : 'NotIn', values });
    } else if ((m = /^([^\s!=]+)\s*!=\s*(\S*)$/.exec(part))) matchExpressions.push({ key: m[1]!, operator: 'NotIn', values: [m[2]!] });
    else if ((m = /^([^\s!=]+)\s*==?\s*(\S*)$/.exec(part))) matchLabels[m[1]!] = m[2]!;
    else if ((m = /^!([^\s!=]+)$/.exec(part))) matchExpressions.push({ key: m[1]!, operator: 'DoesNotExist' });
    else if ((m = /^([^\s!=]+)$/.exec(part))) matchExpressions.push({ key: m[1]!, operator: 'Exists' });
    else throw new InvalidArgumentError(`cannot read ${JSON.stringify(part)} as a label selector term`);
  }
  return {
    ...(Object.keys(matchLabels).length ? { matchLabels } : {}),
    ...(matchExpressions.length ? { matchExpressions } : {}),
  };
}

/** `k=v` pairs (labels, --from-literal). */
export function parsePair(raw: string, what: string): [string, string] {
  const i = raw.indexOf('=');
  if (i <= 0) throw new InvalidArgumentError(`${what} must look like KEY=VALUE`);
  return [raw.slice(0, i), raw.slice(i + 1)];
}
