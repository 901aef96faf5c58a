import { EnvelopeFormatError } from './format.js';

/**
 * The plaintext sealed for one secret version: all of its keys, canonical JSON
 * `{"v":1,"data":{"<key>":"<base64>"}}` with keys in code-point order. Only ever exists in
 * the HSM (at the centre) and in the agent just before it writes the Kubernetes Secret.
 */
export function encodeSecretPayload(data: ReadonlyMap<string, Buffer>): Buffer {
  const keys = [...data.keys()].sort();
  return Buffer.from(JSON.stringify({ v: 1, data: Object.fromEntries(keys.map((k) => [k, data.get(k)!.toString('base64')])) }), 'utf8');
}

/**
 * The byte length encodeSecretPayload would produce, without building it (no copy of the values).
 * Keys are Kubernetes Secret keys ([-._a-zA-Z0-9]), which JSON never escapes.
 */
export function encodedSecretPayloadLength(data: ReadonlyMap<string, Buffer>): number {
  let n = '{"v":1,"data":{}}'.length + Math.max(0, data.size - 1); // the frame and the commas
  for (const [k, v] of data) n += Buffer.byteLength(JSON.stringify(k)) + 1 + 4 * Math.ceil(v.length / 3) + 2;
  return n;
}

export function decodeSecretPayload(payload: Buffer): Map<string, Buffer> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new EnvelopeFormatError('secret payload is not JSON');
  }
  const p = parsed as { v?: unknown; data?: unknown };
  if (p.v !== 1 || typeof p.data !== 'object' || p.data === null) throw new EnvelopeFormatError('unsupported secret payload version');
  return new Map(Object.entries(p.data as Record<string, string>).map(([k, v]) => [k, Buffer.from(v, 'base64')]));
}
