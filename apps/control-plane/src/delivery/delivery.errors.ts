import { featureError, type ErrorKinds } from '../common/sigil-error.js';

/** Codes of publications, their waits, the fleet view and its event streams. */
export enum DeliveryErrorCode {
  TargetRequired = 'target_required',
  ClusterNotFound = 'cluster_not_found',
  NoClustersAllowed = 'no_clusters_allowed',
  ClusterNotAllowed = 'cluster_not_allowed',
  InvalidWait = 'invalid_wait',
  TooManyWaiters = 'too_many_waiters',
  InvalidIdempotencyKey = 'invalid_idempotency_key',
  IdempotencyKeyReused = 'idempotency_key_reused',
  InvalidStateFilter = 'invalid_state_filter',
  InvalidNameFilter = 'invalid_name_filter',
  TooManyEventStreams = 'too_many_event_streams',
  EventStreamsFull = 'event_streams_full',
}

export const DELIVERY_ERROR_KINDS: ErrorKinds<DeliveryErrorCode> = {
  [DeliveryErrorCode.TargetRequired]: 'invalid',
  [DeliveryErrorCode.ClusterNotFound]: 'not_found',
  [DeliveryErrorCode.NoClustersAllowed]: 'forbidden',
  [DeliveryErrorCode.ClusterNotAllowed]: 'forbidden',
  [DeliveryErrorCode.InvalidWait]: 'invalid',
  [DeliveryErrorCode.TooManyWaiters]: 'rate_limited',
  [DeliveryErrorCode.InvalidIdempotencyKey]: 'invalid',
  [DeliveryErrorCode.IdempotencyKeyReused]: 'conflict',
  [DeliveryErrorCode.InvalidStateFilter]: 'invalid',
  [DeliveryErrorCode.InvalidNameFilter]: 'invalid',
  [DeliveryErrorCode.TooManyEventStreams]: 'rate_limited',
  [DeliveryErrorCode.EventStreamsFull]: 'unavailable',
};

export class DeliveryError extends featureError(DELIVERY_ERROR_KINDS) {}
