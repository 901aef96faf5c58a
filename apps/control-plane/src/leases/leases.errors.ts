import { featureError, type ErrorKinds } from '../common/sigil-error.js';

/** Codes of dynamic-secret leases. */
export enum LeasesErrorCode {
  LeaseNotFound = 'lease_not_found',
  /** Revoke asked of a lease that holds no credential (an issue in flight, or one that failed). */
  LeaseNotRevocable = 'lease_not_revocable',
  InvalidLeaseFilter = 'invalid_lease_filter',
}

export const LEASES_ERROR_KINDS: ErrorKinds<LeasesErrorCode> = {
  [LeasesErrorCode.LeaseNotFound]: 'not_found',
  [LeasesErrorCode.LeaseNotRevocable]: 'conflict',
  [LeasesErrorCode.InvalidLeaseFilter]: 'invalid',
};

export class LeasesError extends featureError(LEASES_ERROR_KINDS) {}
