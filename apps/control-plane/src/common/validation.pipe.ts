import { Injectable, type ArgumentMetadata, type PipeTransform } from '@nestjs/common';
import { validate, type ValidationError } from 'class-validator';
import { CommonError, CommonErrorCode } from './common.errors.js';
import type { ProblemField } from './sigil-error.js';

const PRIMITIVES = new Set<unknown>([String, Number, Boolean, Array, Object]);

/**
 * Validates bodies and queries against their DTO classes (class-validator decorators, which
 * also feed the OpenAPI document). Unknown fields are rejected rather than silently dropped.
 */
@Injectable()
export class DtoValidationPipe implements PipeTransform {
  async transform(value: unknown, meta: ArgumentMetadata): Promise<unknown> {
    if ((meta.type !== 'body' && meta.type !== 'query') || !meta.metatype || PRIMITIVES.has(meta.metatype)) return value;
    if (value === undefined && meta.type === 'body')
      throw new CommonError(CommonErrorCode.InvalidBody, 'request body must be a JSON object (Content-Type: application/json)');
    if (value === null || typeof value !== 'object' || Array.isArray(value))
      throw new CommonError(CommonErrorCode.InvalidBody, 'request body must be a JSON object');
    const instance = Object.assign(Object.create(meta.metatype.prototype as object) as object, value);
    const errors = await validate(instance, {
      whitelist: true,
      forbidNonWhitelisted: true,
      forbidUnknownValues: true,
      validationError: { target: false, value: false },
    });
    if (errors.length > 0) {
      const details = flatten(errors);
      throw new CommonError(CommonErrorCode.ValidationFailed, details.map((d) => `${d.field}: ${d.problem}`).join('; '), { details });
    }
    return instance;
  }
}

function flatten(errors: ValidationError[], parent = ''): ProblemField[] {
  return errors.flatMap((e) => {
    const field = parent ? `${parent}.${e.property}` : e.property;
    const own = Object.values(e.constraints ?? {}).map((problem) => ({ field, problem: problem.replace(/^\S+ /, '') }));
    return [...own, ...flatten(e.children ?? [], field)];
  });
}
