import { AgentApiErrorCode, SecretState, type SecretStatus } from '@sigil/agent-protocol';
import type { ReportedStatus } from './snapshot.repository.js';
import { grpcError } from './grpc-errors.js';

/** Statuses in one Applied at most (a state of 10,000 secrets reports each of them). */
export const MAX_REPORTED_SECRETS = 10_000;
const STATE_NAMES: Partial<Record<SecretState, string>> = {
  [SecretState.SECRET_STATE_APPLIED]: 'applied',
  [SecretState.SECRET_STATE_FAILED]: 'failed',
  [SecretState.SECRET_STATE_CONFLICT]: 'conflict',
  [SecretState.SECRET_STATE_DELETED]: 'deleted',
};
const REASON = /^[A-Za-z][A-Za-z0-9]{0,63}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * The statuses of an Applied, checked and bounded before anything is kept: a target and a known
 * state each, a CamelCase reason (a constant, never a value), a message cut to 500 characters.
 * Throws INVALID_ARGUMENT (which ends the stream) on the first bad one.
 */
export function parseStatuses(secrets: SecretStatus[]): ReportedStatus[] {
  if (secrets.length > MAX_REPORTED_SECRETS) {
    throw grpcError(AgentApiErrorCode.TooManyStatuses, `at most ${MAX_REPORTED_SECRETS} secret statuses per report`);
  }
  return secrets.map((s, i) => {
    const state = STATE_NAMES[s.state];
    if (!state || !s.target?.namespace || !s.target.name || s.target.namespace.length > 63 || s.target.name.length > 253) {
      throw grpcError(AgentApiErrorCode.InvalidStatus, `secrets[${i}] needs a target and a state`);
    }
    if (s.reason && !REASON.test(s.reason))
      throw grpcError(AgentApiErrorCode.InvalidStatus, `secrets[${i}].reason must be a CamelCase word`);
    return {
      namespace: s.target.namespace,
      name: s.target.name,
      secretId: UUID.test(s.secretId) ? s.secretId : null,
      version: s.version,
      generation: s.generation.toString(),
      state,
      reason: s.reason,
      message: s.message.slice(0, 500),
    };
  });
}
