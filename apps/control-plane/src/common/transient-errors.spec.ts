import { describe, expect, it } from '@jest/globals';
import { isHsmUnavailableError, isTransientDependencyError } from './transient-errors.js';

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

describe('isHsmUnavailableError', () => {
  const hsm = (message: string, ckr?: string) => Object.assign(new Error(message), { name: 'HsmError', ...(ckr ? { ckr } : {}) });

  it.each([
    ['a token gone', hsm('CKR_GENERAL_ERROR', 'CKR_GENERAL_ERROR')],
    ['a closed session', hsm('CKR_SESSION_CLOSED', 'CKR_SESSION_CLOSED')],
    ['a dead worker', hsm('HSM worker failed: exited with code 1')],
    ['shutting down', hsm('HSM is shutting down')],
  ])('counts %s as an outage', (_what, err) => expect(isHsmUnavailableError(err)).toBe(true));

  it.each([
    ['a tampered ciphertext', hsm('CKR_ENCRYPTED_DATA_INVALID', 'CKR_ENCRYPTED_DATA_INVALID')],
    ['a bad wrapped key', hsm('CKR_WRAPPED_KEY_INVALID', 'CKR_WRAPPED_KEY_INVALID')],
    ['another error', new Error('CKR_GENERAL_ERROR')],
  ])('does not count %s', (_what, err) => expect(isHsmUnavailableError(err)).toBe(false));
});
