import { labelKeyProblem, labelValueProblem, type LabelSelector } from '@sigil/kubernetes';
import { z } from 'zod';

export type { LabelSelector };

const key = z.string().refine((k) => !labelKeyProblem(k), 'must be a valid label key');
const value = z.string().refine((v) => !labelValueProblem(v), 'must be a valid label value');

export const labelSelectorSchema = z
  .object({
    matchLabels: z.record(key, value).optional(),
    matchExpressions: z
      .array(
        z
          .object({ key, operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']), values: z.array(value).max(64).optional() })
          .strict()
          .refine((e) => (e.operator === 'In' || e.operator === 'NotIn' ? (e.values?.length ?? 0) > 0 : e.values === undefined), {
            message: 'In and NotIn need values; Exists and DoesNotExist take none',
          }),
      )
      .max(32)
      .optional(),
  })
  .strict();

export function labelSelectorProblem(v: unknown): string | undefined {
  const r = labelSelectorSchema.safeParse(v);
  if (r.success) return undefined;
  const issue = r.error.issues[0]!;
  return `${issue.path.join('.')} ${issue.message}`.trim();
}

/** Whether `labels` satisfy `selector` (an empty selector matches everything, as in Kubernetes). */
export function matches(selector: LabelSelector, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const ok =
      e.operator === 'Exists'
        ? has
        : e.operator === 'DoesNotExist'
          ? !has
          : e.operator === 'In'
            ? has && e.values!.includes(labels[e.key]!)
            : !has || !e.values!.includes(labels[e.key]!);
    if (!ok) return false;
  }
  return true;
}

/**
 * A canonical text of a selector, so two selectors that say the same thing compare equal:
 * object keys sorted at every depth (arrays keep their order).
 */
export function selectorKey(selector: LabelSelector): string {
  const canonical = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(canonical);
    if (v !== null && typeof v === 'object') {
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
      );
    }
    return v;
  };
  return JSON.stringify(canonical(selector));
}
