import { status } from '@grpc/grpc-js';
import { describe, expect, it } from '@jest/globals';
import { AgentApiErrorCode, ERROR_CODE_METADATA, errorCodeOf, RETRY_AFTER_METADATA, retryAfterMs } from '@sigil/agent-protocol';
import { DependencyError, DependencyErrorCode } from '../common/dependency.errors.js';
import type { ErrorKind } from '../common/sigil-error.js';
import { ClustersError, ClustersErrorCode } from '../clusters/clusters.errors.js';
import { EnrollmentError, EnrollmentErrorCode } from '../enrollment/enrollment.errors.js';
import { HsmError } from '../hsm/hsm-worker-pool.js';
import { KeyCustodyError, KeyCustodyErrorCode } from '../keys/keys.errors.js';
import { GRPC_STATUS, grpcError, toGrpcError } from './grpc-errors.js';

const sent = (err: unknown) => {
  const { error, internal } = toGrpcError(err);
  return { code: error.code, errorCode: errorCodeOf(error), details: error.details, retryAfterMs: retryAfterMs(error.metadata), internal };
};

describe('grpcError', () => {
  it.each(Object.entries(AgentApiErrorCode))('sends %s with its code in %s metadata', (_name, code) => {
    const e = grpcError(code, 'why');
    expect(e.metadata.get(ERROR_CODE_METADATA)).toEqual([code]);
    expect(status[e.code]).toBeDefined();
    expect(e.code === status.INTERNAL).toBe(code === AgentApiErrorCode.Internal);
  });

  // docs/agent-protocol.md and the agent's reactions depend on these.
  it.each([
    [AgentApiErrorCode.CertificateSuperseded, status.UNAUTHENTICATED],
    [AgentApiErrorCode.ClusterNotFound, status.UNAUTHENTICATED],
    [AgentApiErrorCode.ClusterDisabled, status.PERMISSION_DENIED],
    [AgentApiErrorCode.AccessRevoked, status.PERMISSION_DENIED],
    [AgentApiErrorCode.Superseded, status.RESOURCE_EXHAUSTED],
    [AgentApiErrorCode.RateLimited, status.RESOURCE_EXHAUSTED],
    [AgentApiErrorCode.AdmissionRamp, status.UNAVAILABLE],
    [AgentApiErrorCode.ShuttingDown, status.UNAVAILABLE],
    [AgentApiErrorCode.Busy, status.UNAVAILABLE],
    [AgentApiErrorCode.HelloExpected, status.INVALID_ARGUMENT],
  ])('sends %s as status %i', (code, expected) => expect(grpcError(code, 'why').code).toBe(expected));

  it('carries a retry window as retry-after metadata', () => {
    expect(grpcError(AgentApiErrorCode.ShuttingDown, 'bye', 1_500.2).metadata.get(RETRY_AFTER_METADATA)).toEqual(['1501']);
    expect(grpcError(AgentApiErrorCode.HelloExpected, 'no').metadata.get(RETRY_AFTER_METADATA)).toEqual([]);
  });
});

describe('toGrpcError', () => {
  it('has a status for every kind, none of them INTERNAL or OK', () => {
    for (const kind of Object.keys(GRPC_STATUS) as ErrorKind[]) expect([status.OK, status.INTERNAL]).not.toContain(GRPC_STATUS[kind]);
  });

  it.each([
    [new EnrollmentError(EnrollmentErrorCode.EnrollmentTokenInvalid, 'no'), status.UNAUTHENTICATED, 'enrollment_token_invalid'],
    [new EnrollmentError(EnrollmentErrorCode.ClusterDisabled, 'no'), status.PERMISSION_DENIED, 'cluster_disabled'],
    [new EnrollmentError(EnrollmentErrorCode.InvalidCsr, 'no'), status.INVALID_ARGUMENT, 'invalid_csr'],
    [new ClustersError(ClustersErrorCode.ClusterNotFound, 'no'), status.NOT_FOUND, 'cluster_not_found'],
    [new KeyCustodyError(KeyCustodyErrorCode.NoActiveRootKey, 'no'), status.UNAVAILABLE, 'no_active_root_key'],
    [new KeyCustodyError(KeyCustodyErrorCode.ClusterKeyMissing, 'no'), status.UNAVAILABLE, 'cluster_key_missing'],
    [new KeyCustodyError(KeyCustodyErrorCode.InvalidAgentKey, 'no'), status.INVALID_ARGUMENT, 'invalid_agent_key'],
  ])('maps %p to status %i with its code, as a refusal (not logged as internal)', (err, code, errorCode) => {
    expect(sent(err)).toMatchObject({ code, errorCode, details: 'no', internal: false });
  });

  it('sends the work queue’s busy with its retry window', () => {
    const busy = new DependencyError(DependencyErrorCode.Busy, 'busy', { retryAfterSeconds: 3 });
    expect(sent(busy)).toMatchObject({ code: status.UNAVAILABLE, errorCode: 'busy', retryAfterMs: 3_000, internal: false });
  });

  it('answers an HSM outage with UNAVAILABLE hsm_unavailable and a retry window, never the PKCS#11 message', () => {
    const s = sent(new HsmError('C_Sign failed: CKR_DEVICE_REMOVED', 'CKR_DEVICE_REMOVED'));
    expect(s).toMatchObject({ code: status.UNAVAILABLE, errorCode: 'hsm_unavailable', retryAfterMs: 2_000, internal: true });
    expect(s.details).not.toContain('CKR_');
  });

  it('answers a busy database with UNAVAILABLE busy and a retry window', () => {
    const s = sent(new Error('timeout exceeded when trying to connect'));
    expect(s).toMatchObject({ code: status.UNAVAILABLE, errorCode: 'busy', retryAfterMs: 2_000, internal: true });
  });

  it('passes an agent-API refusal through as it is', () => {
    const e = grpcError(AgentApiErrorCode.Stalled, 'reconnect', 1_000);
    expect(toGrpcError(e)).toEqual({ error: e, internal: false });
  });

  it('turns anything else, an HSM data error too, into INTERNAL with no details', () => {
    for (const err of [
      new TypeError('"hunter2" is not a function'),
      new HsmError('CKR_ENCRYPTED_DATA_INVALID', 'CKR_ENCRYPTED_DATA_INVALID'),
    ]) {
      expect(sent(err)).toEqual({
        code: status.INTERNAL,
        errorCode: 'internal',
        details: 'internal error',
        retryAfterMs: undefined,
        internal: true,
      });
    }
  });
});
