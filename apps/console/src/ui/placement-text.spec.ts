import { describe, expect, it } from '@jest/globals';
import { namesText, placementParts, selectorText } from './placement-text';

describe('placement in words', () => {
  it('writes selectors the way kubectl does', () => {
    expect(selectorText({ matchLabels: { tier: 'store', region: 'eu' } })).toBe('tier=store,region=eu');
    expect(
      selectorText({
        matchExpressions: [
          { key: 'region', operator: 'In', values: ['eu', 'us'] },
          { key: 'stage', operator: 'NotIn', values: ['lab'] },
          { key: 'pci', operator: 'Exists' },
          { key: 'legacy', operator: 'DoesNotExist' },
        ],
      }),
    ).toBe('region in (eu,us),stage notin (lab),pci,!legacy');
    expect(selectorText({})).toBe('any labels');
  });

  it('lists ten names and counts the rest', () => {
    const names = Array.from({ length: 12 }, (_, i) => `c${i}`);
    expect(namesText(names)).toBe('c0, c1, c2, c3, c4, c5, c6, c7, c8, c9 and 2 more');
    expect(namesText(['a', 'b'])).toBe('a, b');
  });

  it('says nothing for an app published nowhere, and names the exclusions', () => {
    expect(placementParts({ clusters: [], selectors: [], excluded: ['x'], updatedAt: null })).toBeNull();
    expect(
      placementParts({
        clusters: ['a'],
        selectors: [{ matchLabels: { tier: 'store' } }],
        excluded: ['b'],
        updatedAt: '2026-12-04T00:00:00Z',
      }),
    ).toEqual({ targets: ['a', 'every cluster with tier=store'], except: 'b' });
  });
});
