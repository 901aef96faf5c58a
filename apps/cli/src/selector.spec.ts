import { describe, expect, it } from '@jest/globals';
import { parseSelector } from './selector.js';

describe('parseSelector', () => {
  it('reads kubectl-style terms', () => {
    expect(parseSelector('tier=store,region!=us-east,canary,!legacy,zone in (a, b),env notin (dev)')).toEqual({
      matchLabels: { tier: 'store' },
      matchExpressions: [
        { key: 'region', operator: 'NotIn', values: ['us-east'] },
        { key: 'canary', operator: 'Exists' },
        { key: 'legacy', operator: 'DoesNotExist' },
        { key: 'zone', operator: 'In', values: ['a', 'b'] },
        { key: 'env', operator: 'NotIn', values: ['dev'] },
      ],
    });
  });

  it('an empty selector selects everything', () => {
    expect(parseSelector('')).toEqual({});
  });

  it('refuses what it cannot read', () => {
    expect(() => parseSelector('a b c')).toThrow('cannot read');
  });
});
