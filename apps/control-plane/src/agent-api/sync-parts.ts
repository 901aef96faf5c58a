import {
  CONSUMER_OVERHEAD_BYTES,
  DESIRED_SECRET_OVERHEAD_BYTES,
  DESIRED_STATE_PAGE_BYTES,
  DeliveryMode,
  type DesiredState,
} from '@sigil/agent-protocol';
import { encodeSecretEnvelope } from '@sigil/envelope';
import type { SnapshotBody, SnapshotRow } from './snapshot.repository.js';

const WIRE_MODES: Record<SnapshotBody['deliveryMode'], DeliveryMode> = {
  env: DeliveryMode.DELIVERY_MODE_ENV,
  volume: DeliveryMode.DELIVERY_MODE_VOLUME,
  inject: DeliveryMode.DELIVERY_MODE_INJECT,
};

/**
 * What one UnchangedSecret costs on the wire, at most: a 36-character id, a version and a
 * generation as varints, and framing. Parts are sized with it.
 */
export const UNCHANGED_REF_BYTES = 64;

/** The wire-size estimate of one row in a part: its body in full (with its consumers), or its reference. */
export function rowBytes(r: SnapshotRow): number {
  return r.body
    ? r.body.ciphertext.length + DESIRED_SECRET_OVERHEAD_BYTES + r.body.consumers.length * CONSUMER_OVERHEAD_BYTES
    : UNCHANGED_REF_BYTES;
}

/** One row as the agent receives it: a DesiredSecret when it carries a body, else an UnchangedSecret. */
export function fillPart(part: DesiredState, rows: SnapshotRow[]): void {
  for (const r of rows) {
    if (!r.body) {
      part.unchanged.push({ secretId: r.secretId, version: r.version, generation: BigInt(r.generation) });
      continue;
    }
    const b = r.body;
    part.secrets.push({
      projectId: b.projectId,
      app: b.app,
      secret: b.secret,
      secretId: r.secretId,
      version: r.version,
      target: { namespace: b.namespace, name: b.secret },
      type: b.type,
      deliveryMode: WIRE_MODES[b.deliveryMode],
      envelope: encodeSecretEnvelope({
        clusterKeyVersion: b.clusterKeyVersion,
        wrappedDek: b.wrappedDek,
        iv: b.iv,
        ciphertext: b.ciphertext,
      }),
      generation: BigInt(r.generation),
      consumers: b.consumers.map((c) => ({ namespace: c.namespace, serviceAccount: c.serviceAccount })),
    });
  }
}

/** A part and what it costs in memory until gRPC has written it. */
export interface Part {
  message: DesiredState;
  bytes: number;
}

/**
 * A state read whole (one statement) as its parts: consecutive, each at most
 * DESIRED_STATE_PAGE_BYTES of rows (and always at least one row), key envelopes on part 0, the
 * secret count and more = false on the last.
 */
export function splitState(generation: bigint, base: bigint, keyEnvelopes: Buffer[], rows: SnapshotRow[]): Part[] {
  const parts: Part[] = [];
  let current: Part | undefined;
  let chunk: SnapshotRow[] = [];
  const flush = () => {
    if (!current) return;
    fillPart(current.message, chunk);
    parts.push(current);
    current = undefined;
    chunk = [];
  };
  for (const r of rows) {
    const n = rowBytes(r);
    if (current && current.bytes + n > DESIRED_STATE_PAGE_BYTES) flush();
    current ??= { message: newPart(generation, base, parts.length), bytes: 0 };
    current.bytes += n;
    chunk.push(r);
  }
  flush();
  if (parts.length === 0) parts.push({ message: newPart(generation, base, 0), bytes: 0 });
  parts[0]!.message.clusterKeyEnvelopes = keyEnvelopes;
  parts[0]!.bytes += keyEnvelopes.reduce((n, e) => n + e.length, 0);
  const last = parts.at(-1)!.message;
  last.more = false;
  last.secretCount = rows.length;
  return parts;
}

export function newPart(generation: bigint, base: bigint, part: number): DesiredState {
  return { generation, baseGeneration: base, part, more: true, secrets: [], unchanged: [], clusterKeyEnvelopes: [], secretCount: 0 };
}
