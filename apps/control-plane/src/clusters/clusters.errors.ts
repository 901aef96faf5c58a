import { featureError, type ErrorKinds } from '../common/sigil-error.js';

/** Codes of clusters and their enrollment tokens. */
export enum ClustersErrorCode {
  ClusterNotFound = 'cluster_not_found',
  ClusterExists = 'cluster_exists',
  ClusterDisabled = 'cluster_disabled',
  EnrollmentTokenNotFound = 'enrollment_token_not_found',
}

export const CLUSTERS_ERROR_KINDS: ErrorKinds<ClustersErrorCode> = {
  [ClustersErrorCode.ClusterNotFound]: 'not_found',
  [ClustersErrorCode.ClusterExists]: 'conflict',
  [ClustersErrorCode.ClusterDisabled]: 'conflict',
  [ClustersErrorCode.EnrollmentTokenNotFound]: 'not_found',
};

export class ClustersError extends featureError(CLUSTERS_ERROR_KINDS) {}
