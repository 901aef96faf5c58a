import { dns1123LabelProblem, secretKeyProblem } from '../common/kubernetes-names.js';
import {
  CREATION_PLACEHOLDERS,
  MAX_STATEMENTS,
  REVOCATION_PLACEHOLDERS,
  statementFormsProblem,
  statementsProblem,
  type Placeholder,
} from '../connections/engines/statement-template.js';

/**
 * Dynamic secrets (docs/dynamic-secrets.md): the recipe of a secret whose values are a
 * per-cluster database credential, issued as a lease by the leases sweeps. Validated here and
 * stored on the secret row (`secrets.dynamic`); it never holds a value.
 */
export interface DynamicSpec {
  /** The project's database connection (connections/) the roles are created through. */
  connection: string;
  /** Templates with {{name}}, {{password}}, {{expiration}}; run in one transaction. */
  creationStatements: string[];
  /** Templates with {{name}}; empty: the engine's default (end the role's sessions, drop it). */
  revocationStatements: string[];
  ttlSeconds: number;
  /** A new credential is issued this long before the current one expires. */
  renewBeforeSeconds: number;
  /** How long the previous credential keeps working after the cluster applied its successor. */
  graceSeconds: number;
  /** Secret key → template of its value ({{username}}, {{password}}, {{host}}, {{port}}, {{database}}, {{sslmode}}). */
  keys: Record<string, string>;
}

export const MAX_TTL_SECONDS = 30 * 86_400;
/** The shortest TTL outside tests (SIGIL_LEASE_MIN_TTL_S may lower it, for tests only). */
export const DEFAULT_MIN_TTL_SECONDS = 300;
export const MAX_DYNAMIC_KEYS = 32;
export const MAX_KEY_TEMPLATE_LENGTH = 4096;
export { MAX_STATEMENTS };

export const KEY_PLACEHOLDERS = ['username', 'password', 'host', 'port', 'database', 'sslmode'] as const;
export type KeyPlaceholder = (typeof KEY_PLACEHOLDERS)[number];

const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g;
const SPEC_FIELDS = new Set([
  'connection',
  'creationStatements',
  'revocationStatements',
  'ttlSeconds',
  'renewBeforeSeconds',
  'graceSeconds',
  'keys',
]);
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/** Why a template's placeholders are refused: unknown ones, or an unmatched brace. */
function placeholderProblem(template: string, allowed: readonly string[]): string | undefined {
  for (const [, name] of template.matchAll(PLACEHOLDER))
    if (!allowed.includes(name!))
      return `uses {{${name!.slice(0, 40)}}}; only ${allowed.map((p) => `{{${p}}}`).join(', ')} may be used here`;
  const stray = template.replace(PLACEHOLDER, '');
  if (stray.includes('{{') || stray.includes('}}')) return 'has an unmatched {{ or }}';
  return undefined;
}

/** The engine's own statement checks (connections/), named by this request's field. */
function statementsFieldProblem(
  field: string,
  v: unknown,
  allowed: readonly Placeholder[],
  kind: 'creation' | 'revocation',
  required: boolean,
): string | undefined {
  if (required && Array.isArray(v) && v.length === 0) return `${field} must have at least one statement`;
  const p = statementsProblem(v, allowed) ?? statementFormsProblem(v as string[], kind);
  return p && `${field}: ${p}`;
}

/**
 * Why the request's `dynamic` object is refused, if it is: its shape, the statements'
 * placeholders, the key names and templates (a DTO rule: 400 `validation_failed`, naming the
 * field). The TTL bounds depend on configuration and are checked by `dynamicTimesProblem`.
 */
export function dynamicSpecProblem(v: unknown): string | undefined {
  if (!isObject(v)) return 'must be an object with connection, creationStatements, ttlSeconds, renewBeforeSeconds, graceSeconds and keys';
  for (const f of Object.keys(v)) if (!SPEC_FIELDS.has(f)) return `has an unknown field ${JSON.stringify(f.slice(0, 40))}`;
  if (typeof v.connection !== 'string') return 'connection must be the name of a database connection of the project';
  const cp = dns1123LabelProblem(v.connection);
  if (cp) return `connection ${cp}`;
  const create = statementsFieldProblem('creationStatements', v.creationStatements, CREATION_PLACEHOLDERS, 'creation', true);
  if (create) return create;
  const all = (v.creationStatements as string[]).join('\n');
  if (!/\{\{\s*name\s*\}\}/.test(all) || !/\{\{\s*password\s*\}\}/.test(all))
    return 'creationStatements must use {{name}} and {{password}} (the role Sigil creates and its password)';
  if (v.revocationStatements !== undefined) {
    const revoke = statementsFieldProblem('revocationStatements', v.revocationStatements, REVOCATION_PLACEHOLDERS, 'revocation', false);
    if (revoke) return revoke;
  }
  for (const f of ['ttlSeconds', 'renewBeforeSeconds', 'graceSeconds'] as const)
    if (!isCount(v[f])) return `${f} must be a whole number of seconds`;
  const keys = v.keys;
  if (!isObject(keys) || Object.keys(keys).length === 0) return 'keys must map at least one Secret key to a template';
  if (Object.keys(keys).length > MAX_DYNAMIC_KEYS) return `keys may have at most ${MAX_DYNAMIC_KEYS} entries`;
  for (const [k, t] of Object.entries(keys)) {
    const kp = secretKeyProblem(k);
    if (kp) return `keys.${k.slice(0, 80)}: key ${kp}`;
    if (typeof t !== 'string') return `keys.${k} must be a template string`;
    if (t.length > MAX_KEY_TEMPLATE_LENGTH) return `keys.${k} is longer than ${MAX_KEY_TEMPLATE_LENGTH} characters`;
    const p = placeholderProblem(t, KEY_PLACEHOLDERS);
    if (p) return `keys.${k} ${p}`;
  }
  return undefined;
}

/** Why the spec's times are refused (field and problem), if they are. */
export function dynamicTimesProblem(
  spec: Pick<DynamicSpec, 'ttlSeconds' | 'renewBeforeSeconds' | 'graceSeconds'>,
  minTtlSeconds: number,
): { field: string; problem: string } | undefined {
  const { ttlSeconds: ttl, renewBeforeSeconds: renew, graceSeconds: grace } = spec;
  if (ttl < minTtlSeconds || ttl > MAX_TTL_SECONDS)
    return { field: 'dynamic.ttlSeconds', problem: `must be between ${minTtlSeconds} and ${MAX_TTL_SECONDS} (30 days)` };
  if (renew < 1 || renew >= ttl) return { field: 'dynamic.renewBeforeSeconds', problem: 'must be at least 1 and less than ttlSeconds' };
  // Each credential lives at least a fifth of its TTL (or a minute) before its renewal: no renewal storms.
  if (ttl - renew < Math.min(60, Math.ceil(ttl / 5)))
    return {
      field: 'dynamic.renewBeforeSeconds',
      problem: "must leave at least min(60, ttlSeconds / 5) seconds between a credential's issue and its renewal",
    };
  // The database refuses the old role at its expiry (VALID UNTIL): its grace must end before then.
  if (grace >= renew)
    return {
      field: 'dynamic.graceSeconds',
      problem: 'must be less than renewBeforeSeconds (the old credential expires renewBeforeSeconds after its replacement is issued)',
    };
  if (grace >= ttl - renew)
    return {
      field: 'dynamic.graceSeconds',
      problem: 'must be less than ttlSeconds - renewBeforeSeconds (the old credential must be revocable before the new one is renewed)',
    };
  return undefined;
}

/** The spec as stored: every field spelled out (an absent revocation list is the engine's default, []). */
export function normalizeDynamicSpec(v: DynamicSpec): DynamicSpec {
  return {
    connection: v.connection,
    creationStatements: [...v.creationStatements],
    revocationStatements: [...(v.revocationStatements ?? [])],
    ttlSeconds: v.ttlSeconds,
    renewBeforeSeconds: v.renewBeforeSeconds,
    graceSeconds: v.graceSeconds,
    keys: { ...v.keys },
  };
}
