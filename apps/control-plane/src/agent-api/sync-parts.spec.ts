import { describe, expect, it } from '@jest/globals';
import { DESIRED_STATE_PAGE_BYTES, DeliveryMode, DesiredState } from '@sigil/agent-protocol';
import type { SnapshotBody, SnapshotRow } from './snapshot.repository.js';
import { newPart, fillPart, rowBytes, splitState, UNCHANGED_REF_BYTES } from './sync-parts.js';

const full = (i: number, bytes: number, extra: Partial<SnapshotBody> = {}): SnapshotRow => ({
  secretId: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
  version: 1,
  generation: '5',
  body: {
    secret: `s${i}`,
    type: 'Opaque',
    projectId: 'p',
    app: 'a',
    namespace: 'ns',
    deliveryMode: 'env',
    consumers: [],
    clusterKeyVersion: 1,
    wrappedDek: Buffer.alloc(40),
    iv: Buffer.alloc(12),
    ciphertext: Buffer.alloc(bytes),
    ...extra,
  },
});
const ref = (i: number): SnapshotRow => ({ secretId: `r${i}`, version: 2, generation: '3', body: undefined });

describe('splitState', () => {
  it('splits by the part budget, key envelopes on part 0, the count and more=false on the last', () => {
    const rows = [full(1, 900_000), full(2, 900_000), full(3, 900_000), ref(4)];
    const parts = splitState(7n, 3n, [Buffer.from('SGK1')], rows);
    expect(parts.map((p) => [p.message.part, p.message.more, p.message.secrets.length, p.message.unchanged.length])).toEqual([
      [0, true, 2, 0],
      [1, false, 1, 1],
    ]);
    expect(parts[0]!.message.clusterKeyEnvelopes).toHaveLength(1);
    expect(parts[1]!.message.clusterKeyEnvelopes).toHaveLength(0);
    expect(parts[1]!.message.secretCount).toBe(4);
    expect(parts.every((p) => p.message.generation === 7n && p.message.baseGeneration === 3n)).toBe(true);
    expect(parts.every((p) => p.bytes <= DESIRED_STATE_PAGE_BYTES + 4)).toBe(true);
  });

  it('sends an empty state as one part, and many references over several parts', () => {
    expect(splitState(2n, 0n, [], []).map((p) => [p.message.more, p.message.secretCount])).toEqual([[false, 0]]);
    const n = Math.ceil((DESIRED_STATE_PAGE_BYTES / UNCHANGED_REF_BYTES) * 1.5);
    const parts = splitState(
      9n,
      8n,
      [],
      Array.from({ length: n }, (_, i) => ref(i)),
    );
    expect(parts).toHaveLength(2);
    expect(parts.reduce((t, p) => t + p.message.unchanged.length, 0)).toBe(n);
  });
});

describe('fillPart', () => {
  const consumers = [
    { namespace: 'shop', serviceAccount: 'checkout' },
    { namespace: 'batch', serviceAccount: '*' },
  ];

  it('sends an inject secret as DELIVERY_MODE_INJECT with its consumers, the other modes as before', () => {
    const part = newPart(1n, 0n, 0);
    fillPart(part, [full(1, 10, { deliveryMode: 'inject', consumers }), full(2, 10), full(3, 10, { deliveryMode: 'volume' })]);
    expect(part.secrets.map((s) => [s.deliveryMode, s.consumers])).toEqual([
      [DeliveryMode.DELIVERY_MODE_INJECT, consumers],
      [DeliveryMode.DELIVERY_MODE_ENV, []],
      [DeliveryMode.DELIVERY_MODE_VOLUME, []],
    ]);
  });

  it('estimates at least what a row with the longest consumers costs on the wire', () => {
    const longest = Array.from({ length: 64 }, (_, i) => ({ namespace: `${i}`.padEnd(63, 'n'), serviceAccount: 's'.repeat(253) }));
    const row = full(1, 1000, { deliveryMode: 'inject', consumers: longest, app: 'a'.repeat(63), secret: 's'.repeat(253) });
    const part = newPart(1n, 0n, 0);
    fillPart(part, [row]);
    const wire = DesiredState.encode(part).finish().length;
    expect(rowBytes(row)).toBeGreaterThanOrEqual(wire);
    expect(rowBytes(row) - rowBytes(full(1, 1000))).toBeGreaterThan(64 * 316); // the names alone
  });
});
