import { featureError, type ErrorKinds } from './sigil-error.js';

/** Codes of the request plumbing every route shares: bodies, pages, label filters, ETags. */
export enum CommonErrorCode {
  InvalidBody = 'invalid_body',
  ValidationFailed = 'validation_failed',
  InvalidCursor = 'invalid_cursor',
  InvalidLimit = 'invalid_limit',
  InvalidLabelFilter = 'invalid_label_filter',
  PreconditionFailed = 'precondition_failed',
}

export const COMMON_ERROR_KINDS: ErrorKinds<CommonErrorCode> = {
  [CommonErrorCode.InvalidBody]: 'invalid',
  [CommonErrorCode.ValidationFailed]: 'invalid',
  [CommonErrorCode.InvalidCursor]: 'invalid',
  [CommonErrorCode.InvalidLimit]: 'invalid',
  [CommonErrorCode.InvalidLabelFilter]: 'invalid',
  [CommonErrorCode.PreconditionFailed]: 'precondition_failed',
};

export class CommonError extends featureError(COMMON_ERROR_KINDS) {}
