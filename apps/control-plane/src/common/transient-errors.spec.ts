import { describe, expect, it } from '@jest/globals';
import { isTransientDependencyError } from './transient-errors.js';

describe('isTransientDependencyError', () => {
  const withCode = (code: string) => Object.assign(new Error('x'), { code });

  it.each([
    ['a pool acquire timeout', new Error('timeout exceeded when trying to connect')],
    ['a dropped connection', new Error('Connection terminated unexpectedly')],
    ['a refused connection', withCode('ECONNREFUSED')],
    ['PostgreSQL shutting down', withCode('57P01')],
    ['a deadlock', Object.assign(new Error('deadlock detected'), { driverError: { code: '40P01' } })],
  ])('retries %s', (_what, err) => expect(isTransientDependencyError(err)).toBe(true));

  it.each([
    ['a unique violation', Object.assign(new Error('duplicate key'), { driverError: { code: '23505' } })],
    ['a programming error', new TypeError('x is undefined')],
    ['a non-error', 'timeout exceeded when trying to connect'],
  ])('does not retry %s', (_what, err) => expect(isTransientDependencyError(err)).toBe(false));
});
