import type { ArgumentsHost } from '@nestjs/common';
import { describe, expect, it } from '@jest/globals';
import type { PinoLogger } from 'nestjs-pino';
import { APPS_ERROR_KINDS, AppsError } from '../apps/apps.errors.js';
import { AUDIT_ERROR_KINDS, AuditError } from '../audit/audit.errors.js';
import { AUTH_ERROR_KINDS, AuthError } from '../auth/auth.errors.js';
import { CLUSTERS_ERROR_KINDS, ClustersError } from '../clusters/clusters.errors.js';
import { COMMON_ERROR_KINDS, CommonError } from '../common/common.errors.js';
import { CONNECTIONS_ERROR_KINDS, ConnectionsError, ConnectionsErrorCode } from '../connections/connections.errors.js';
import { DEPENDENCY_ERROR_KINDS, DependencyError } from '../common/dependency.errors.js';
import type { ErrorKind, SigilError } from '../common/sigil-error.js';
import { DELIVERY_ERROR_KINDS, DeliveryError, DeliveryErrorCode } from '../delivery/delivery.errors.js';
import { ENROLLMENT_ERROR_KINDS, EnrollmentError } from '../enrollment/enrollment.errors.js';
import { HsmError } from '../hsm/hsm-worker-pool.js';
import { KEY_CUSTODY_ERROR_KINDS, KeyCustodyError, KeyCustodyErrorCode } from '../keys/keys.errors.js';
import { LEASES_ERROR_KINDS, LeasesError } from '../leases/leases.errors.js';
import { PROJECTS_ERROR_KINDS, ProjectsError } from '../projects/projects.errors.js';
import { SECRETS_ERROR_KINDS, SecretsError } from '../secrets/secrets.errors.js';
import { HTTP_STATUS, ProblemDetailsFilter } from './problem-details.filter.js';

/** Every feature's codes with its error class: what the REST filter must map. */
const FEATURES: Array<[string, Readonly<Record<string, ErrorKind>>, new (code: never, message: string) => SigilError]> = [
  ['common', COMMON_ERROR_KINDS, CommonError],
  ['dependency', DEPENDENCY_ERROR_KINDS, DependencyError],
  ['auth', AUTH_ERROR_KINDS, AuthError],
  ['projects', PROJECTS_ERROR_KINDS, ProjectsError],
  ['apps', APPS_ERROR_KINDS, AppsError],
  ['secrets', SECRETS_ERROR_KINDS, SecretsError],
  ['clusters', CLUSTERS_ERROR_KINDS, ClustersError],
  ['enrollment', ENROLLMENT_ERROR_KINDS, EnrollmentError],
  ['delivery', DELIVERY_ERROR_KINDS, DeliveryError],
  ['audit', AUDIT_ERROR_KINDS, AuditError],
  ['keys', KEY_CUSTODY_ERROR_KINDS, KeyCustodyError],
  ['leases', LEASES_ERROR_KINDS, LeasesError],
  ['connections', CONNECTIONS_ERROR_KINDS, ConnectionsError],
];
const EVERY_CODE = FEATURES.flatMap(([feature, kinds, E]) =>
  Object.entries(kinds).map(([code, kind]) => ({ feature, code, kind, error: new E(code as never, `refused: ${code}`) })),
);

interface Answer {
  status: number;
  headers: Record<string, string>;
  type: string;
  body: { status: number; code: string; detail?: string; errors?: unknown; requestId?: string; instance?: string };
  logged: string[];
}

/** Runs the filter on one thrown value, as Nest would for a request to /api/v1/things. */
function answer(thrown: unknown): Answer {
  const a: Answer = { status: 0, headers: {}, type: '', body: undefined as never, logged: [] };
  const logger = {
    setContext: () => undefined,
    warn: (_o: unknown, msg: string) => a.logged.push(`warn: ${msg}`),
    error: (_o: unknown, msg: string) => a.logged.push(`error: ${msg}`),
  } as unknown as PinoLogger;
  const res = {
    setHeader: (k: string, v: string) => (a.headers[k.toLowerCase()] = v),
    status(s: number) {
      a.status = s;
      return this;
    },
    type(t: string) {
      a.type = t;
      return this;
    },
    send: (text: string) => (a.body = JSON.parse(text) as Answer['body']),
  };
  const req = { id: 'req-1', originalUrl: '/api/v1/things?x=1' };
  const host = { switchToHttp: () => ({ getRequest: () => req, getResponse: () => res }) } as unknown as ArgumentsHost;
  new ProblemDetailsFilter(logger).catch(thrown, host);
  return a;
}

describe('ProblemDetailsFilter', () => {
  it.each(EVERY_CODE.map((c) => [`${c.feature} ${c.code}`, c] as const))(
    'maps %s to its kind’s status, with its code and message',
    (_name, c) => {
      const a = answer(c.error);
      expect(a.status).toBe(HTTP_STATUS[c.kind]);
      // 502: a registered system (a target database) failed for the caller, not Sigil.
      expect(a.status < 500 || a.status === 503 || (a.status === 502 && c.kind === 'upstream_failed')).toBe(true);
      expect(a.type).toBe('application/problem+json');
      expect(a.body).toMatchObject({
        status: a.status,
        code: c.code,
        detail: `refused: ${c.code}`,
        requestId: 'req-1',
        instance: '/api/v1/things',
      });
      if (a.status === 503) expect(Number(a.headers['retry-after'])).toBeGreaterThan(0);
      expect(a.logged).toEqual([]);
    },
  );

  it('answers a target database that failed with 502 connection_failed and the engine’s reason, without Retry-After', () => {
    const a = answer(new ConnectionsError(ConnectionsErrorCode.ConnectionFailed, 'cannot reach db:5432', { reason: 'unreachable' }));
    expect([a.status, a.body.code, (a.body as { reason?: string }).reason]).toEqual([502, 'connection_failed', 'unreachable']);
    expect(a.headers['retry-after']).toBeUndefined();
  });

  it('gives one code one kind everywhere, except cluster_disabled (an admin’s 409, an agent’s 403)', () => {
    const kinds = new Map<string, Set<ErrorKind>>();
    for (const c of EVERY_CODE) kinds.set(c.code, (kinds.get(c.code) ?? new Set()).add(c.kind));
    const several = [...kinds].filter(([, k]) => k.size > 1).map(([code]) => code);
    expect(several).toEqual(['cluster_disabled']);
  });

  it.each([
    [KeyCustodyErrorCode.NoActiveRootKey, 503],
    [KeyCustodyErrorCode.ClusterKeyMissing, 503],
    [KeyCustodyErrorCode.RotationInProgress, 409],
    [KeyCustodyErrorCode.RootKeyInUse, 409],
    [KeyCustodyErrorCode.RootKeyNotFound, 404],
    [KeyCustodyErrorCode.InvalidAgentKey, 400],
  ])('maps KeyCustodyError %s to %i, not a 500', (code, status) => {
    const a = answer(new KeyCustodyError(code, 'key custody says no'));
    expect([a.status, a.body.code]).toEqual([status, code]);
  });

  it('answers an HSM outage (a secret write whose seal fails: token gone) with 503 hsm_unavailable and Retry-After', () => {
    const a = answer(new HsmError('C_EncryptInit failed: CKR_TOKEN_NOT_PRESENT', 'CKR_TOKEN_NOT_PRESENT'));
    expect([a.status, a.body.code]).toEqual([503, 'hsm_unavailable']);
    expect(a.headers['retry-after']).toBe('2');
    expect(a.body.detail).toBe('the HSM is unavailable; retry shortly'); // not the PKCS#11 message
    expect(a.logged).toEqual(['warn: dependency busy or unavailable']);
  });

  it('answers a dead HSM worker (no PKCS#11 code) with 503 hsm_unavailable', () => {
    expect(answer(new HsmError('HSM worker failed: exited with code 1')).body.code).toBe('hsm_unavailable');
  });

  it('keeps an HSM data error (a tampered ciphertext) a 500 with nothing but the request id', () => {
    const a = answer(new HsmError('CKR_ENCRYPTED_DATA_INVALID', 'CKR_ENCRYPTED_DATA_INVALID'));
    expect([a.status, a.body.code]).toEqual([500, 'internal']);
    expect(JSON.stringify(a.body)).not.toContain('CKR_');
    expect(a.logged).toEqual(['error: request failed']);
  });

  it('answers a busy database with 503 busy and Retry-After, never quoting the driver', () => {
    const a = answer(Object.assign(new Error('terminating connection: SELECT secret-value'), { code: '57P01' }));
    expect([a.status, a.body.code, a.headers['retry-after']]).toEqual([503, 'busy', '2']);
    expect(JSON.stringify(a.body)).not.toContain('secret-value');
  });

  it('sends a refusal’s own retry window as Retry-After', () => {
    const a = answer(new DeliveryError(DeliveryErrorCode.TooManyWaiters, 'too many waiting requests', { retryAfterSeconds: 1 }));
    expect([a.status, a.body.code, a.headers['retry-after']]).toEqual([429, 'too_many_waiters', '1']);
  });

  it('turns anything unexpected into a 500 that quotes nothing', () => {
    const a = answer(new TypeError('cannot read "hunter2" of undefined'));
    expect([a.status, a.body.code]).toEqual([500, 'internal']);
    expect(JSON.stringify(a.body)).not.toContain('hunter2');
    expect(a.headers['retry-after']).toBeUndefined();
  });
});
