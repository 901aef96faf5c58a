import { describe, expect, it } from '@jest/globals';
import type { DesiredSecret } from '@sigil/agent-protocol';
import { byTarget, resolveContested, sourceOf } from './ownership.js';

const entry = (projectId: string, secret: string, name = 'db'): DesiredSecret =>
  ({ projectId, app: 'shop', secret, target: { namespace: 'shop', name } }) as unknown as DesiredSecret;

describe('one owner per Kubernetes Secret', () => {
  const a = entry('p1', 'db');
  const b = entry('p2', 'db');

  it('groups desired entries by target, keeping every entry', () => {
    const groups = byTarget([a, entry('p1', 'other', 'other'), b]);
    expect([...groups.keys()]).toEqual(['shop/db', 'shop/other']);
    expect(groups.get('shop/db')).toEqual([a, b]);
  });

  it('keeps the entry that already owns the Secret, whatever the order, and refuses the other', () => {
    expect(resolveContested([a, b], sourceOf(a))).toEqual({ kept: a, refused: [b] });
    expect(resolveContested([b, a], sourceOf(a))).toEqual({ kept: a, refused: [b] });
  });

  it('refuses every entry when none owns it: absent, or owned by a third source, or owned ambiguously', () => {
    expect(resolveContested([a, b], undefined)).toEqual({ kept: undefined, refused: [a, b] });
    expect(resolveContested([a, b], 'p3/shop/db')).toEqual({ kept: undefined, refused: [a, b] });
    const a2 = entry('p1', 'db');
    expect(resolveContested([a, a2], sourceOf(a))).toEqual({ kept: undefined, refused: [a, a2] });
  });
});
