import { describe, expect, it } from '@jest/globals';
import { DESIRED_STATE_PAGE_BYTES } from '@sigil/agent-protocol';
import type { SnapshotRow } from './snapshot.repository.js';
import { splitState, UNCHANGED_REF_BYTES } from './sync-parts.js';

const full = (i: number, bytes: number): SnapshotRow => ({
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
    clusterKeyVersion: 1,
    wrappedDek: Buffer.alloc(40),
    iv: Buffer.alloc(12),
    ciphertext: Buffer.alloc(bytes),
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
