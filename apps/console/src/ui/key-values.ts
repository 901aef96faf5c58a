// The console's one parser of typed key=value lists: cluster labels, label selectors to publish
// by, and generated or dynamic secret keys. Pure (no React), so Jest tests it directly.

/** A pair that is not key=value; the message names it, for the form's error. */
export class KeyValueError extends Error {}

/**
 * "a=1\nb=2" or "a=1, b=2" (whatever `separators` splits on) → { a: '1', b: '2' }. The first `=`
 * splits a pair, so values may contain `=`; keys and values are trimmed, empty pairs skipped,
 * a later key replaces an earlier one. `shape` is how the form names a pair ("key=value").
 */
export function parseKeyValues(text: string, separators: RegExp = /[\n,]+/, shape = 'key=value'): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of text
    .split(separators)
    .map((p) => p.trim())
    .filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new KeyValueError(`“${pair}” is not ${shape}`);
    out[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
  return out;
}

/** `key=value` pairs back to the text parseKeyValues reads, one per line. */
export function keyValueText(pairs: Record<string, unknown>): string {
  return Object.entries(pairs)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join('\n');
}
