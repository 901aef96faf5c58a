import { ValidateIf, registerDecorator, type ValidationOptions } from 'class-validator';
import { dns1123LabelProblem, dns1123SubdomainProblem, labelKeyProblem, labelValueProblem } from './kubernetes-names.js';

/**
 * An optional field: validators run unless the field is absent. Unlike class-validator's
 * IsOptional (which also skips `null`), a `null` is validated and refused as a 400
 * (validation_failed), so it never reaches a service as a value it does not expect; the
 * OpenAPI document accordingly marks no optional request field nullable.
 */
export const IsAbsentOr = () => ValidateIf((_object: object, value: unknown) => value !== undefined);

export function rule(name: string, check: (v: unknown) => string | undefined, options?: ValidationOptions) {
  return (target: object, propertyName: string) => {
    let problem: string | undefined;
    registerDecorator({
      name,
      target: target.constructor,
      propertyName,
      options: { ...options, message: () => `${propertyName} ${problem ?? 'is invalid'}` },
      validator: {
        validate: (v: unknown) => {
          problem = check(v);
          return problem === undefined;
        },
      },
    });
  };
}

const str = (inner: (v: string) => string | undefined) => (v: unknown) => (typeof v === 'string' ? inner(v) : 'must be a string');

export const IsDns1123Label = (o?: ValidationOptions) => rule('isDns1123Label', str(dns1123LabelProblem), o);
export const IsDns1123Subdomain = (o?: ValidationOptions) => rule('isDns1123Subdomain', str(dns1123SubdomainProblem), o);

/** A map of Kubernetes labels. */
export const IsLabelMap = (o?: ValidationOptions) =>
  rule(
    'isLabelMap',
    (v) => {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) return 'must be an object of label names to values';
      const entries = Object.entries(v);
      if (entries.length > 64) return 'must have at most 64 labels';
      for (const [k, val] of entries) {
        const kp = labelKeyProblem(k);
        if (kp) return `key ${JSON.stringify(k.slice(0, 80))} ${kp}`;
        if (typeof val !== 'string') return `value of ${JSON.stringify(k)} must be a string`;
        const vp = labelValueProblem(val);
        if (vp) return `value of ${JSON.stringify(k)} ${vp}`;
      }
      return undefined;
    },
    o,
  );

/** An object whose values are all strings (the shape only; keys are checked by the service). */
export const IsStringMap = (o?: ValidationOptions) =>
  rule(
    'isStringMap',
    (v) => {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) return 'must be an object of keys to string values';
      for (const [k, val] of Object.entries(v))
        if (typeof val !== 'string') return `value of ${JSON.stringify(k.slice(0, 80))} must be a string`;
      return undefined;
    },
    o,
  );
