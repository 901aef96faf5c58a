import { describe, expect, it } from '@jest/globals';
import pg from 'pg';
import {
  CREATION_PLACEHOLDERS,
  REVOCATION_PLACEHOLDERS,
  renderStatement,
  statementFormsProblem,
  statementsProblem,
  TemplateError,
} from './statement-template.js';

const values = {
  name: pg.escapeIdentifier('sigil_ab12cd34_x'),
  password: pg.escapeLiteral('SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy'),
  expiration: pg.escapeLiteral('2030-01-02T03:04:05.000Z'),
};

describe('statement templates', () => {
  it('replaces each placeholder by its quoted SQL, with or without spaces inside the braces', () => {
    expect(renderStatement('CREATE ROLE {{name}} LOGIN PASSWORD {{ password }} VALID UNTIL {{expiration}}', values)).toBe(
      `CREATE ROLE "sigil_ab12cd34_x" LOGIN PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy' VALID UNTIL '2030-01-02T03:04:05.000Z'`,
    );
    expect(renderStatement('GRANT SELECT ON orders TO {{name}}; GRANT USAGE ON SCHEMA s TO {{name}}', values)).toBe(
      'GRANT SELECT ON orders TO "sigil_ab12cd34_x"; GRANT USAGE ON SCHEMA s TO "sigil_ab12cd34_x"',
    );
  });

  it('quotes so that a value cannot leave its quotes', () => {
    const hostile = { name: pg.escapeIdentifier('a"; DROP TABLE x; --') };
    expect(renderStatement('DROP ROLE {{name}}', hostile)).toBe('DROP ROLE "a""; DROP TABLE x; --"');
  });

  it('refuses unknown placeholders, placeholders the kind may not use, and unmatched braces, naming the statement', () => {
    expect(statementsProblem(['CREATE ROLE {{name}}', 'ALTER ROLE {{username}}'], CREATION_PLACEHOLDERS)).toBe(
      'statement 2 uses {{username}}; only {{name}}, {{password}}, {{expiration}} may be used here',
    );
    expect(statementsProblem(['ALTER ROLE {{name}} PASSWORD {{password}}'], REVOCATION_PLACEHOLDERS)).toMatch(
      /statement 1 uses \{\{password\}\}; only \{\{name\}\}/,
    );
    expect(statementsProblem(['CREATE ROLE {{name}'], CREATION_PLACEHOLDERS)).toBe('statement 1 has an unmatched {{ or }}');
    expect(statementsProblem(['CREATE ROLE {{}}'], CREATION_PLACEHOLDERS)).toMatch(/uses \{\{\}\}/);
    expect(statementsProblem([''], CREATION_PLACEHOLDERS)).toBe('statement 1 must be a non-empty string');
    expect(statementsProblem(['a\0b'], CREATION_PLACEHOLDERS)).toMatch(/NUL/);
    expect(statementsProblem('CREATE ROLE x', CREATION_PLACEHOLDERS)).toMatch(/array/);
    expect(statementsProblem(Array(33).fill('SELECT 1'), CREATION_PLACEHOLDERS)).toMatch(/at most 32/);
    expect(statementsProblem(['CREATE ROLE {{name}}'], CREATION_PLACEHOLDERS)).toBeUndefined();
  });

  it('throws a TemplateError for a placeholder without a value, never quoting the values', () => {
    expect(() => renderStatement('ALTER ROLE {{name}} PASSWORD {{password}}', { name: values.name })).toThrow(TemplateError);
    try {
      renderStatement('{{name}} {{oops}}', values);
    } catch (err) {
      expect((err as Error).message).toBe('the statement uses {{oops}}; only {{name}}, {{password}}, {{expiration}} may be used here');
      expect((err as Error).message).not.toContain('SCRAM');
    }
  });
});

describe('statement forms', () => {
  it.each([
    'CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}',
    'create user {{ name }} with login password {{password}};',
    'ALTER ROLE {{name}} SET statement_timeout = 5000',
    'GRANT SELECT, INSERT ON orders TO {{name}}',
    'GRANT USAGE ON SCHEMA app\n  TO {{name}}',
    'GRANT readers TO {{name}}',
  ])('allows creation: %s', (s) => {
    expect(statementFormsProblem([s], 'creation')).toBeUndefined();
  });

  it.each([
    'ALTER ROLE CURRENT_USER CREATEDB',
    'ALTER ROLE {{name}} RENAME TO sigil_admin',
    'ALTER ROLE other SUPERUSER',
    'CREATE ROLE {{name}}x LOGIN',
    'CREATE ROLE other IN ROLE {{name}}',
    'GRANT {{name}} TO other',
    'GRANT SELECT ON orders TO other',
    "COPY orders TO PROGRAM 'sh'",
    'DO $$ BEGIN NULL; END $$',
    'SELECT pg_terminate_backend(1)',
    'DROP ROLE {{name}}',
  ])('refuses creation: %s', (s) => {
    expect(statementFormsProblem(['CREATE ROLE {{name}} PASSWORD {{password}}', s], 'creation')).toMatch(
      /^statement 2 is not one of the creation forms Sigil runs as the admin role: CREATE ROLE/,
    );
  });

  it('allows the revocation forms and refuses anything else', () => {
    const allowed = [
      'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {{name}} CASCADE',
      'REASSIGN OWNED BY {{name}} TO CURRENT_USER',
      'DROP OWNED BY {{name}}',
      'DROP ROLE IF EXISTS {{name}};',
      'drop user {{name}}',
      'ALTER ROLE {{name}} NOLOGIN',
    ];
    expect(statementFormsProblem(allowed, 'revocation')).toBeUndefined();
    for (const s of ['DROP ROLE sigil_admin', 'REASSIGN OWNED BY {{name}} TO other', 'ALTER ROLE {{name}} LOGIN', 'DROP DATABASE orders'])
      expect(statementFormsProblem([s], 'revocation')).toMatch(/^statement 1 is not one of the revocation forms/);
  });
});
