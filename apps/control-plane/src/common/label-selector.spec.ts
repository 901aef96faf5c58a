import { describe, expect, it } from '@jest/globals';
import { labelSelectorProblem, matches, selectorKey } from './label-selector.js';

describe('label selectors', () => {
  const store = { region: 'eu-west', tier: 'store', canary: 'true' };

  it.each([
    [{}, true],
    [{ matchLabels: { region: 'eu-west' } }, true],
    [{ matchLabels: { region: 'us-east' } }, false],
    [{ matchExpressions: [{ key: 'tier', operator: 'In', values: ['store', 'factory'] }] }, true],
    [{ matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['store'] }] }, false],
    [{ matchExpressions: [{ key: 'missing', operator: 'NotIn', values: ['x'] }] }, true],
    [{ matchExpressions: [{ key: 'canary', operator: 'Exists' }] }, true],
    [{ matchExpressions: [{ key: 'canary', operator: 'DoesNotExist' }] }, false],
    [{ matchLabels: { region: 'eu-west' }, matchExpressions: [{ key: 'tier', operator: 'In', values: ['factory'] }] }, false],
  ] as const)('%j matches the store: %s', (selector, expected) => {
    expect(matches(selector as never, store)).toBe(expected);
  });

  it.each([
    [{ matchLabels: { 'bad key!': 'x' } }, 'matchLabels'],
    [{ matchExpressions: [{ key: 'a', operator: 'In' }] }, 'need values'],
    [{ matchExpressions: [{ key: 'a', operator: 'Exists', values: ['x'] }] }, 'take none'],
    [{ matchExpressions: [{ key: 'a', operator: 'Near', values: ['x'] }] }, 'operator'],
    [{ other: 1 }, 'Unrecognized'],
  ])('rejects %j', (selector, problem) => {
    expect(labelSelectorProblem(selector)).toContain(problem);
  });

  it('gives selectors that differ anywhere different keys, and the same key whatever the key order', () => {
    expect(selectorKey({ matchLabels: { region: 'eu' } })).not.toBe(selectorKey({ matchLabels: { region: 'us' } }));
    expect(selectorKey({ matchLabels: { a: '1', b: '2' } })).toBe(selectorKey({ matchLabels: { b: '2', a: '1' } }));
    expect(selectorKey({ matchExpressions: [{ key: 'tier', operator: 'In', values: ['a'] }] })).not.toBe(
      selectorKey({ matchExpressions: [{ key: 'tier', operator: 'In', values: ['b'] }] }),
    );
    expect(selectorKey({ matchExpressions: [{ operator: 'Exists', key: 'x' }], matchLabels: {} })).toBe(
      selectorKey({ matchLabels: {}, matchExpressions: [{ key: 'x', operator: 'Exists' }] }),
    );
  });
});
