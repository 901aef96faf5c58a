import { describe, expect, it } from '@jest/globals';
import { dynamicSpecProblem, dynamicTimesProblem } from './dynamic-spec.js';

const spec = (over: Record<string, unknown> = {}) => ({
  connection: 'orders-db',
  creationStatements: ['CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}', 'GRANT SELECT ON t TO {{name}}'],
  revocationStatements: ['DROP ROLE IF EXISTS {{name}}'],
  ttlSeconds: 3600,
  renewBeforeSeconds: 600,
  graceSeconds: 60,
  keys: {
    username: '{{username}}',
    password: '{{password}}',
    DATABASE_URL: 'postgresql://{{username}}:{{password}}@{{host}}:{{port}}/{{database}}?sslmode={{sslmode}}',
  },
  ...over,
});

describe('dynamic secret specs', () => {
  it('accepts a complete spec, and one without revocation statements', () => {
    expect(dynamicSpecProblem(spec())).toBeUndefined();
    const { revocationStatements: _r, ...rest } = spec();
    expect(dynamicSpecProblem(rest)).toBeUndefined();
  });

  it.each([
    [{ extra: 1 }, 'unknown field'],
    [{ connection: 'Not_A_Label' }, 'connection'],
    [{ creationStatements: [] }, 'at least one statement'],
    [{ creationStatements: ['CREATE ROLE {{name}}'] }, '{{name}} and {{password}}'],
    [{ creationStatements: ['CREATE ROLE {{name}} PASSWORD {{password}} {{username}}'] }, 'uses {{username}}'],
    [{ creationStatements: ['CREATE ROLE {{name}} PASSWORD {{password}} }}'] }, 'unmatched'],
    [{ revocationStatements: ['DROP ROLE {{name}} {{password}}'] }, 'uses {{password}}'],
    [
      { creationStatements: ['CREATE ROLE {{name}} LOGIN PASSWORD {{password}}', 'ALTER ROLE CURRENT_USER SUPERUSER'] },
      'statement 2 is not one of the creation forms',
    ],
    [
      { creationStatements: ['CREATE ROLE {{name}} PASSWORD {{password}}', 'ALTER ROLE {{name}} RENAME TO x'] },
      'statement 2 is not one of',
    ],
    [
      { creationStatements: ['CREATE ROLE {{name}} PASSWORD {{password}}', 'COPY orders TO PROGRAM {{name}}'] },
      'statement 2 is not one of',
    ],
    [{ creationStatements: ['CREATE ROLE {{name}} PASSWORD {{password}}', 'GRANT SELECT ON t TO other'] }, 'statement 2 is not one of'],
    [{ revocationStatements: ['DROP ROLE sigil_admin'] }, 'statement 1 is not one of the revocation forms'],
    [{ revocationStatements: ['DO $$ BEGIN PERFORM 1; END $$'] }, 'not one of the revocation forms'],
    [{ ttlSeconds: 1.5 }, 'whole number'],
    [{ keys: {} }, 'at least one Secret key'],
    [{ keys: { 'bad key': '{{username}}' } }, 'key'],
    [{ keys: { url: '{{secret}}' } }, 'uses {{secret}}'],
    [{ keys: { url: 5 } }, 'template string'],
  ])('refuses %j', (over, problem) => {
    expect(dynamicSpecProblem(spec(over))).toContain(problem);
  });

  it('bounds the times: ttl, renewal before expiry, grace before the next renewal', () => {
    expect(dynamicTimesProblem(spec(), 300)).toBeUndefined();
    expect(dynamicTimesProblem(spec({ ttlSeconds: 60 }), 300)?.field).toBe('dynamic.ttlSeconds');
    expect(dynamicTimesProblem(spec({ ttlSeconds: 60, renewBeforeSeconds: 10, graceSeconds: 5 }), 10)).toBeUndefined();
    expect(dynamicTimesProblem(spec({ ttlSeconds: 31 * 86_400 }), 300)?.field).toBe('dynamic.ttlSeconds');
    expect(dynamicTimesProblem(spec({ renewBeforeSeconds: 3600 }), 300)?.field).toBe('dynamic.renewBeforeSeconds');
    expect(dynamicTimesProblem(spec({ renewBeforeSeconds: 0 }), 300)?.field).toBe('dynamic.renewBeforeSeconds');
    expect(dynamicTimesProblem(spec({ graceSeconds: 3000 }), 300)?.field).toBe('dynamic.graceSeconds');
  });

  it('leaves each credential a fifth of its TTL (at most a minute) before renewal, and its grace within its life', () => {
    // 3600 s: renewal at most 3540 s before expiry (60 s of life first).
    expect(dynamicTimesProblem(spec({ renewBeforeSeconds: 3540, graceSeconds: 30 }), 300)).toBeUndefined();
    expect(dynamicTimesProblem(spec({ renewBeforeSeconds: 3541, graceSeconds: 30 }), 300)?.field).toBe('dynamic.renewBeforeSeconds');
    // 30 s: a fifth is 6 s.
    expect(dynamicTimesProblem(spec({ ttlSeconds: 30, renewBeforeSeconds: 24, graceSeconds: 2 }), 10)).toBeUndefined();
    expect(dynamicTimesProblem(spec({ ttlSeconds: 30, renewBeforeSeconds: 25, graceSeconds: 2 }), 10)?.field).toBe(
      'dynamic.renewBeforeSeconds',
    );
    // The old role expires renewBeforeSeconds after its successor is issued: a longer grace would be a lie.
    const grace = dynamicTimesProblem(spec({ ttlSeconds: 3600, renewBeforeSeconds: 100, graceSeconds: 100 }), 300);
    expect(grace).toEqual({ field: 'dynamic.graceSeconds', problem: expect.stringContaining('less than renewBeforeSeconds') });
  });
});
