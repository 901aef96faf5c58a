import { describe, expect, it } from '@jest/globals';
import { AppsError } from './apps.errors.js';
import { checkConsumers, consumersProblem, MAX_APP_CONSUMERS } from './consumers.js';

const c = (namespace: string, serviceAccount: string) => ({ namespace, serviceAccount });

describe('consumersProblem', () => {
  it('accepts namespace/serviceAccount pairs, "*" for any service account, and an empty list', () => {
    expect(consumersProblem([])).toBeUndefined();
    expect(consumersProblem([c('shop', 'checkout'), c('shop', 'system.sa-1'), c('batch', '*')])).toBeUndefined();
    expect(consumersProblem(Array.from({ length: MAX_APP_CONSUMERS }, (_, i) => c(`ns-${i}`, '*')))).toBeUndefined();
  });

  it.each([
    ['not an array', { namespace: 'shop', serviceAccount: 'x' }, 'must be an array'],
    ['an entry not an object', ['shop/checkout'], '[0] must be an object'],
    ['a namespace that is not a DNS-1123 label', [c('Shop', 'x')], '[0].namespace'],
    ['a namespace with a dot', [c('a.b', 'x')], '[0].namespace'],
    ['a service account that is not a subdomain', [c('shop', 'sa_1')], '[0].serviceAccount'],
    ['a glob that is not exactly "*"', [c('shop', 'web-*')], '[0].serviceAccount'],
    ['a missing service account', [{ namespace: 'shop' }], '[0].serviceAccount must be a string'],
    ['an unknown field', [{ ...c('shop', 'x'), pod: 'p' }], 'unknown field "pod"'],
    ['a duplicate', [c('shop', 'x'), c('batch', '*'), c('shop', 'x')], '[2] repeats shop/x'],
    ['too many', Array.from({ length: MAX_APP_CONSUMERS + 1 }, (_, i) => c(`ns-${i}`, '*')), 'at most 64'],
  ])('refuses %s', (_what, v, problem) => {
    expect(consumersProblem(v)).toContain(problem);
  });
});

describe('checkConsumers', () => {
  it('demands at least one consumer in inject mode only', () => {
    expect(() => checkConsumers('inject', [])).toThrow(AppsError);
    try {
      checkConsumers('inject', []);
    } catch (err) {
      expect(err).toMatchObject({ code: 'consumers_required', kind: 'invalid' });
    }
    expect(() => checkConsumers('inject', [c('shop', '*')])).not.toThrow();
    expect(() => checkConsumers('env', [])).not.toThrow();
    expect(() => checkConsumers('volume', [])).not.toThrow();
  });
});
