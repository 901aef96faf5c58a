import { describe, expect, it } from '@jest/globals';
import { usesSecret } from './restarts.js';

describe('usesSecret', () => {
  it.each([
    ['envFrom', { containers: [{ envFrom: [{ secretRef: { name: 'db' } }] }] }, true],
    ['env valueFrom', { containers: [{ env: [{ valueFrom: { secretKeyRef: { name: 'db' } } }] }] }, true],
    ['init container', { containers: [], initContainers: [{ envFrom: [{ secretRef: { name: 'db' } }] }] }, true],
    ['secret volume', { volumes: [{ secret: { secretName: 'db' } }] }, true],
    ['projected volume', { volumes: [{ projected: { sources: [{ secret: { name: 'db' } }] } }] }, true],
    [
      'another Secret',
      { containers: [{ envFrom: [{ secretRef: { name: 'cache' } }] }], volumes: [{ secret: { secretName: 'tls' } }] },
      false,
    ],
    ['nothing', {}, false],
  ])('%s → %s', (_what, spec, expected) => {
    expect(usesSecret(spec, 'db')).toBe(expected);
  });
});
