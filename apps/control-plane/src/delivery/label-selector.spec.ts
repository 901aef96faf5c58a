import { describe, expect, it } from '@jest/globals';
import { labelSelectorProblem, matches } from './label-selector.js';

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
});
