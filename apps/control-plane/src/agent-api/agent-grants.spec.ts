import { describe, expect, it } from '@jest/globals';
import type { Grant } from '@sigil/agent-protocol';
import { MAX_GRANTS_PER_MESSAGE, parseGrants } from './agent-grants.js';

const ID = '3f1c0a9d-5e7b-4c44-86f0-a1b2c3d4e5f6';
const NOW = Date.parse('2026-12-02T07:00:00Z');
const grant = (g: Partial<Grant> = {}): Grant => ({
  secretId: ID,
  version: 3,
  namespace: 'shop',
  serviceAccount: 'checkout',
  pod: 'checkout-7d9f8-abcde',
  count: 2,
  lastAt: new Date(NOW - 1_000),
  ...g,
});

describe('parseGrants', () => {
  it('keeps well-formed grants as reported', () => {
    expect(parseGrants([grant()], NOW)).toEqual({
      grants: [
        {
          secretId: ID,
          version: 3,
          namespace: 'shop',
          serviceAccount: 'checkout',
          pod: 'checkout-7d9f8-abcde',
          count: 2,
          lastAt: new Date(NOW - 1_000),
        },
      ],
      malformed: 0,
    });
  });

  it('leaves out and counts malformed grants instead of ending the stream', () => {
    const bad = [
      grant({ secretId: 'not-a-uuid' }),
      grant({ version: 0 }),
      grant({ namespace: 'Shop' }),
      grant({ namespace: 'a'.repeat(64) }),
      grant({ serviceAccount: '*' }),
      grant({ serviceAccount: 'sa_1' }),
      grant({ pod: '' }),
      grant({ pod: 'p'.repeat(254) }),
      grant({ pod: 'web\u0000-1' }),
      grant({ pod: 'Web-1' }),
      grant({ version: 2 ** 31 }),
    ];
    const r = parseGrants([...bad, grant({ serviceAccount: 'a.b', pod: 'p'.repeat(253) })], NOW);
    expect(r.malformed).toBe(bad.length);
    expect(r.grants.map((g) => g.serviceAccount)).toEqual(['a.b']);
  });

  it('counts a grant at least once, and takes a missing or far-future time as now', () => {
    const [a, b, c] = parseGrants(
      [grant({ count: 0 }), grant({ lastAt: undefined }), grant({ lastAt: new Date(NOW + 3_600_000) })],
      NOW,
    ).grants;
    expect(a!.count).toBe(1);
    expect(b!.lastAt.getTime()).toBe(NOW);
    expect(c!.lastAt.getTime()).toBe(NOW);
  });

  it('refuses more than MAX_GRANTS_PER_MESSAGE in one message', () => {
    expect(() =>
      parseGrants(
        Array.from({ length: MAX_GRANTS_PER_MESSAGE + 1 }, () => grant()),
        NOW,
      ),
    ).toThrow(/at most 1000 grants/);
    expect(
      parseGrants(
        Array.from({ length: MAX_GRANTS_PER_MESSAGE }, () => grant()),
        NOW,
      ).grants,
    ).toHaveLength(MAX_GRANTS_PER_MESSAGE);
  });
});
