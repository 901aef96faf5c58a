import { featureError, type ErrorKinds } from '../common/sigil-error.js';

/** Codes of the audit log: writing it (every mutating request) and reading it. */
export enum AuditErrorCode {
  AuditUnavailable = 'audit_unavailable',
  InvalidOutcome = 'invalid_outcome',
  InvalidCursor = 'invalid_cursor',
  InvalidAction = 'invalid_action',
  InvalidProject = 'invalid_project',
}

export const AUDIT_ERROR_KINDS: ErrorKinds<AuditErrorCode> = {
  [AuditErrorCode.AuditUnavailable]: 'unavailable',
  [AuditErrorCode.InvalidOutcome]: 'invalid',
  [AuditErrorCode.InvalidCursor]: 'invalid',
  [AuditErrorCode.InvalidAction]: 'invalid',
  [AuditErrorCode.InvalidProject]: 'invalid',
};

export class AuditError extends featureError(AUDIT_ERROR_KINDS) {}
