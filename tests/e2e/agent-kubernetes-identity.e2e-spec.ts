import { createPrivateKey, generateKeyPairSync, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { status } from '@grpc/grpc-js';
import type { KubernetesIdentity } from '../../apps/control-plane/src/clusters/kubernetes-identity.js';
import { startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import {
  allowAnonymousIssuerDiscovery,
  createNamespace,
  kubeConfig,
  mintServiceAccountToken,
  testEnv,
  uniqueName,
} from '../harness/test-env.js';
import { TestAgent, refused } from '../harness/test-agent.js';

// Enrollment with no shared secret: the agent presents a projected service-account token that
// a real kube-apiserver issued (TokenRequest); a control-plane process verifies it with that API
// server's /openid/v1/jwks. (A process, not in-process modules: jose's WebCrypto type checks do
// not hold across Jest's VM realms.)

const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
const parts = (jwt: string) => {
  const [h, p] = jwt.split('.');
  return {
    header: JSON.parse(Buffer.from(h!, 'base64url').toString()) as Record<string, unknown>,
    claims: JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>,
  };
};
/** An RS256 JWT, signed with node:crypto: for tokens TokenRequest will not make. */
const signRs256 = (header: Record<string, unknown>, claims: Record<string, unknown>, key: KeyObject) => {
  const input = `${b64url(header)}.${b64url(claims)}`;
  return `${input}.${sign('sha256', Buffer.from(input), key).toString('base64url')}`;
};

const AUDIENCE = 'sigil';
const SA = 'sigil-agent';

describe('enrollment by Kubernetes service-account identity', () => {
  let cp: RunningControlPlane;
  let caPem: string;
  let namespace: string;
  let identity: KubernetesIdentity;
  const agents: TestAgent[] = [];

  const registered = async (id: KubernetesIdentity | null = identity) => {
    const name = uniqueName('k');
    const res = await cp.admin.post('/clusters', { name, ...(id ? { kubernetesIdentity: id } : {}) });
    expect(res.status).toBe(201);
    const a = new TestAgent(cp.cp.grpcAddress, caPem, name);
    agents.push(a);
    return a;
  };
  const saToken = async (audiences = [AUDIENCE], account = SA) => ({
    $case: 'serviceAccountToken' as const,
    value: await mintServiceAccountToken(namespace, account, audiences),
  });

  beforeAll(async () => {
    const kube = testEnv().kube;
    await allowAnonymousIssuerDiscovery();
    namespace = await createNamespace('sa');
    identity = {
      issuer: kube.issuer,
      jwksUri: `${kube.server}/openid/v1/jwks`,
      caCert: readFileSync(kube.caFile, 'utf8'),
      serviceAccount: { namespace, name: SA },
      allowPrivateAddresses: true, // the test API server listens on 127.0.0.1
    };
    cp = await startControlPlane();
    caPem = (await cp.admin.get<{ caCertificatePem: string }>('/agents/trust')).body.caCertificatePem;
  });

  afterAll(async () => {
    for (const a of agents) a.close();
    await cp?.stop();
  });

  it('enrolls with a TokenRequest token for the Sigil audience, verified with the API server’s JWKS', async () => {
    const a = await registered();
    const res = await a.enroll(await saToken());
    expect(new X509Certificate(res.certificateDer).subject).toContain(`CN=${a.cluster}`);
    expect((await a.desiredState()).clusterKeyEnvelopes.length).toBeGreaterThan(0);
  });

  it('lets a restarted agent with no state enroll again, superseding the old certificate', async () => {
    const first = await registered();
    await first.enroll(await saToken());
    const again = new TestAgent(cp.cp.grpcAddress, caPem, first.cluster);
    agents.push(again);
    await again.enroll(await saToken());
    expect((await again.desiredState()).clusterKeyEnvelopes.length).toBeGreaterThan(0);
    expect(await refused(first.desiredState())).toMatchObject({ code: status.UNAUTHENTICATED, errorCode: 'certificate_superseded' });
  });

  it('refuses a token for another audience', async () => {
    const a = await registered();
    expect(await refused(a.enroll(await saToken(['https://kubernetes.default.svc'])))).toMatchObject({
      code: status.UNAUTHENTICATED,
      errorCode: 'service_account_token_invalid',
    });
  });

  it('refuses a token from another issuer than the registered one', async () => {
    const a = await registered({ ...identity, issuer: 'https://issuer.other-cluster.example' });
    expect(await refused(a.enroll(await saToken()))).toMatchObject({
      code: status.UNAUTHENTICATED,
      errorCode: 'service_account_token_invalid',
    });
  });

  it('refuses an expired token signed by the real issuer key', async () => {
    const real = parts((await saToken()).value);
    const now = Math.floor(Date.now() / 1000);
    const issuerKey = createPrivateKey(readFileSync(testEnv().kube.signingKeyFile));
    const expired = signRs256(real.header, { ...real.claims, iat: now - 900, nbf: now - 900, exp: now - 120 }, issuerKey);
    const a = await registered();
    expect(await refused(a.enroll({ $case: 'serviceAccountToken', value: expired }))).toMatchObject({
      code: status.UNAUTHENTICATED,
      errorCode: 'service_account_token_invalid',
    });
  });

  it('refuses a token signed by any other key', async () => {
    const real = parts((await saToken()).value);
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const forged = signRs256(real.header, real.claims, privateKey);
    const a = await registered();
    expect(await refused(a.enroll({ $case: 'serviceAccountToken', value: forged }))).toMatchObject({
      code: status.UNAUTHENTICATED,
      errorCode: 'service_account_token_invalid',
    });
  });

  it('refuses another service account’s token from the same cluster', async () => {
    const a = await registered();
    expect(await refused(a.enroll(await saToken([AUDIENCE], 'intruder')))).toMatchObject({
      code: status.UNAUTHENTICATED,
      errorCode: 'service_account_token_invalid',
    });
  });

  it('refuses service-account tokens for a cluster registered without an identity', async () => {
    const a = await registered(null);
    expect(await refused(a.enroll(await saToken()))).toMatchObject({
      code: status.UNAUTHENTICATED,
      errorCode: 'service_account_token_invalid',
    });
  });

  it('verifies against an inline JWKS, and finds the keys by OIDC discovery', async () => {
    const k8s = await import('@kubernetes/client-node');
    const openid = (await kubeConfig()).makeApiClient(k8s.OpenidApi);
    // Typed as a string, but client-node parses the application/jwk-set+json body.
    const jwks = (await openid.getServiceAccountIssuerOpenIDKeyset()) as unknown as KubernetesIdentity['jwks'];
    const inline = await registered({ issuer: identity.issuer, jwks, serviceAccount: identity.serviceAccount });
    await inline.enroll(await saToken());
    const discovered = await registered({
      issuer: identity.issuer,
      caCert: identity.caCert,
      serviceAccount: identity.serviceAccount,
      allowPrivateAddresses: true,
    });
    await discovered.enroll(await saToken());
    expect((await discovered.desiredState()).clusterKeyEnvelopes.length).toBeGreaterThan(0);
  });
});
