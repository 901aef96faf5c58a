/**
 * Creation and revocation statements are templates (docs/dynamic-secrets.md, "Statements"):
 * `{{name}}`, `{{password}}` and `{{expiration}}` are replaced by already-quoted SQL (an
 * identifier, a literal, a literal), so a template author never quotes and a value can never
 * break out of its quotes. Anything else between double braces is refused: a typo must not reach
 * the database as text.
 */

export type Placeholder = 'name' | 'password' | 'expiration';

/** What each kind of statement may use: revocation knows only the role. */
export const CREATION_PLACEHOLDERS: readonly Placeholder[] = ['name', 'password', 'expiration'];
export const REVOCATION_PLACEHOLDERS: readonly Placeholder[] = ['name'];

export const MAX_STATEMENTS = 32;
export const MAX_STATEMENT_LENGTH = 8192;

const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g;

/** Why `statements` cannot be used with `allowed` (undefined: they can), naming the statement by index. */
export function statementsProblem(statements: unknown, allowed: readonly Placeholder[]): string | undefined {
  if (!Array.isArray(statements)) return 'must be an array of SQL statements';
  if (statements.length > MAX_STATEMENTS) return `must have at most ${MAX_STATEMENTS} statements`;
  for (const [i, s] of statements.entries()) {
    if (typeof s !== 'string' || s.trim() === '') return `statement ${i + 1} must be a non-empty string`;
    if (s.length > MAX_STATEMENT_LENGTH) return `statement ${i + 1} is longer than ${MAX_STATEMENT_LENGTH} characters`;
    if (s.includes('\0')) return `statement ${i + 1} contains a NUL character`;
    for (const [, raw] of s.matchAll(PLACEHOLDER)) {
      const name = raw!;
      if (!(allowed as readonly string[]).includes(name))
        return `statement ${i + 1} uses {{${name.slice(0, 40)}}}; only ${allowed.map((p) => `{{${p}}}`).join(', ')} may be used here`;
    }
    const stray = s.replace(PLACEHOLDER, '');
    if (stray.includes('{{') || stray.includes('}}')) return `statement ${i + 1} has an unmatched {{ or }}`;
  }
  return undefined;
}

/**
 * What a statement may do (docs/dynamic-secrets.md, "What statements may do"). They run as the
 * connection's admin role, written by whoever may write secrets, so they are held to what making
 * and removing one workload role needs: each is one statement (the engine sends each with the
 * extended protocol, which refuses a second one after a `;`) of one of these forms, aimed at
 * `{{name}}`. Not `ALTER ROLE CURRENT_USER`, not another role, not `COPY`, `DO` or functions.
 * The engine checks what came out of them too (the role exists, without superpowers).
 */
const NAME = String.raw`\{\{\s*name\s*\}\}`;
const END = String.raw`\s*;?\s*$`;
const CREATION_FORMS: ReadonlyArray<[RegExp, string]> = [
  [new RegExp(String.raw`^CREATE\s+(ROLE|USER)\s+${NAME}(\s|;|$)`, 'i'), 'CREATE ROLE {{name}} ...'],
  [new RegExp(String.raw`^ALTER\s+(ROLE|USER)\s+${NAME}\s+(?!RENAME\b)\S`, 'i'), 'ALTER ROLE {{name}} ... (not RENAME)'],
  [new RegExp(String.raw`^GRANT\s[\s\S]*\sTO\s+${NAME}${END}`, 'i'), 'GRANT ... TO {{name}}'],
];
const REVOCATION_FORMS: ReadonlyArray<[RegExp, string]> = [
  [new RegExp(String.raw`^REVOKE\s[\s\S]*\sFROM\s+${NAME}(\s+(CASCADE|RESTRICT))?${END}`, 'i'), 'REVOKE ... FROM {{name}}'],
  [new RegExp(String.raw`^REASSIGN\s+OWNED\s+BY\s+${NAME}\s+TO\s+CURRENT_USER${END}`, 'i'), 'REASSIGN OWNED BY {{name}} TO CURRENT_USER'],
  [new RegExp(String.raw`^DROP\s+OWNED\s+BY\s+${NAME}(\s+(CASCADE|RESTRICT))?${END}`, 'i'), 'DROP OWNED BY {{name}}'],
  [new RegExp(String.raw`^DROP\s+(ROLE|USER)\s+(IF\s+EXISTS\s+)?${NAME}${END}`, 'i'), 'DROP ROLE [IF EXISTS] {{name}}'],
  [new RegExp(String.raw`^ALTER\s+(ROLE|USER)\s+${NAME}\s+NOLOGIN${END}`, 'i'), 'ALTER ROLE {{name}} NOLOGIN'],
];

/** Why a statement of `kind` is not one of the forms it may take (undefined: it is), naming it by index. */
export function statementFormsProblem(statements: readonly string[], kind: 'creation' | 'revocation'): string | undefined {
  const forms = kind === 'creation' ? CREATION_FORMS : REVOCATION_FORMS;
  for (const [i, s] of statements.entries())
    if (!forms.some(([form]) => form.test(s.trim())))
      return `statement ${i + 1} is not one of the ${kind} forms Sigil runs as the admin role: ${forms.map(([, f]) => f).join('; ')}`;
  return undefined;
}

export class TemplateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TemplateError';
  }
}

/**
 * Renders one template. `values` holds the SQL each placeholder becomes (already quoted); a
 * placeholder without a value, or an unknown one, throws a TemplateError naming it (never the
 * values: the password's is a verifier).
 */
export function renderStatement(template: string, values: Partial<Record<Placeholder, string>>): string {
  const problem = statementsProblem([template], Object.keys(values) as Placeholder[]);
  if (problem) throw new TemplateError(problem.replace(/^statement 1 /, 'the statement '));
  return template.replace(PLACEHOLDER, (_m, name: string) => values[name as Placeholder]!);
}
