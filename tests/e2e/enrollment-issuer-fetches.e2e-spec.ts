import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { status } from '@grpc/grpc-js';
import type { KubernetesIdentity } from '../../apps/control-plane/src/clusters/kubernetes-identity.js';
import { startControlPlane, type RunningControlPlane } from '../harness/running-control-plane.js';
import { selfSigned } from '../harness/certificates.js';
import { uniqueName } from '../harness/test-env.js';
import { TestAgent, type CallFailure, refused } from '../harness/test-agent.js';

// Enroll is unauthenticated, so what it makes the control plane fetch matters: nothing for a
// token that names another issuer or audience, nothing from loopback/private addresses unless
// an admin allows it for the cluster, discovery and JWKS once per TTL, and one answer for every
// refusal. The issuer here is a real HTTPS server on loopback that counts the requests it gets.

const SA = { namespace: 'sigil-agent', name: 'sigil-agent' };
const GENERIC = { code: status.UNAUTHENTICATED, errorCode: 'service_account_token_invalid' };

const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
function jwt(key: KeyObject, claims: Record<string, unknown>): string {
  const input = `${b64url({ alg: 'RS256', kid: 'k1', typ: 'JWT' })}.${b64url(claims)}`;
  return `${input}.${sign('sha256', Buffer.from(input), key).toString('base64url')}`;
}

describe('what an Enroll with a service-account token makes the control plane fetch', () => {
  let cp: RunningControlPlane;
  let caPem: string;
  let issuerServer: Server;
  let issuerCa: string;
  /** https://127.0.0.1:<port> and https://localhost:<port>: the same server, by address and by a name resolving to loopback. */
  let byAddress: string;
  let byName: string;
  const hits: string[] = [];
  const issuerKey = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const agents: TestAgent[] = [];

  const token = (claims: Record<string, unknown> = {}) => {
    const now = Math.floor(Date.now() / 1000);
    return {
      $case: 'serviceAccountToken' as const,
      value: jwt(issuerKey.privateKey, {
        iss: byAddress,
        aud: ['sigil'],
        sub: `system:serviceaccount:${SA.namespace}:${SA.name}`,
        iat: now,
        nbf: now,
        exp: now + 600,
        ...claims,
      }),
    };
  };
  const registered = async (identity: Partial<KubernetesIdentity>) => {
    const name = uniqueName('k');
    const res = await cp.admin.post('/clusters', {
      name,
      kubernetesIdentity: { issuer: byAddress, caCert: issuerCa, serviceAccount: SA, ...identity },
    });
    expect(res.status).toBe(201);
    const a = new TestAgent(cp.cp.grpcAddress, caPem, name);
    agents.push(a);
    return a;
  };
  const count = (suffix: string) => hits.filter((h) => h.endsWith(suffix)).length;

  beforeAll(async () => {
    const issuerTls = selfSigned('issuer', ['subjectAltName=IP:127.0.0.1,DNS:localhost']);
    issuerCa = issuerTls.cert;
    const jwks = { keys: [{ ...issuerKey.publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'RS256', use: 'sig' }] };
    issuerServer = createServer({ key: issuerTls.key, cert: issuerCa }, (req, res) => {
      const url = req.url ?? '/';
      hits.push(`${req.headers.host}${url}`);
      const json = (code: number, body: unknown) => {
        res.writeHead(code, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (url === '/.well-known/openid-configuration')
        return json(200, { issuer: byAddress, jwks_uri: `https://${req.headers.host}/jwks` });
      if (url === '/jwks') return json(200, jwks);
      return json(500, { message: 'internal detail that must not reach the agent' });
    });
    await new Promise<void>((resolve) => issuerServer.listen(0, '127.0.0.1', resolve));
    const { port } = issuerServer.address() as AddressInfo;
    byAddress = `https://127.0.0.1:${port}`;
    byName = `https://localhost:${port}`;
    cp = await startControlPlane();
    caPem = (await cp.admin.get<{ caCertificatePem: string }>('/agents/trust')).body.caCertificatePem;
  });

  afterAll(async () => {
    for (const a of agents) a.close();
    await cp?.stop();
    issuerServer?.close();
  });

  it('refuses a token naming another issuer, audience or service account without any request to the issuer', async () => {
    const a = await registered({ allowPrivateAddresses: true });
    for (const claims of [{ iss: 'https://issuer.other.example' }, { aud: ['kubernetes'] }, { sub: 'system:serviceaccount:x:y' }]) {
      expect(await refused(a.enroll(token(claims)))).toMatchObject(GENERIC);
    }
    expect(hits).toEqual([]);
  });

  it('refuses a loopback issuer, by address or by a name resolving to it, unless an admin allows it for the cluster', async () => {
    const byIp = await registered({});
    expect(await refused(byIp.enroll(token()))).toMatchObject(GENERIC);
    const named = await registered({ issuer: byName });
    expect(await refused(named.enroll(token({ iss: byName })))).toMatchObject(GENERIC);
    const explicitJwks = await registered({ jwksUri: `${byName}/jwks` });
    expect(await refused(explicitJwks.enroll(token()))).toMatchObject(GENERIC);
    expect(hits).toEqual([]);
  });

  it('with the admin’s allowance, enrolls; repeated enrollments fetch discovery and the JWKS once within the TTL', async () => {
    const first = await registered({ allowPrivateAddresses: true });
    await first.enroll(token());
    expect((await first.desiredState()).generation).toBeGreaterThanOrEqual(0n);
    const second = await registered({ allowPrivateAddresses: true });
    await second.enroll(token());
    const again = new TestAgent(cp.cp.grpcAddress, caPem, first.cluster);
    agents.push(again);
    await again.enroll(token());
    expect(count('/.well-known/openid-configuration')).toBe(1);
    expect(count('/jwks')).toBe(1);
  });

  it('answers every refusal alike, with no HTTP status or connection detail', async () => {
    const answers: CallFailure[] = [];
    const broken = await registered({ jwksUri: `${byAddress}/broken/jwks`, allowPrivateAddresses: true });
    answers.push(await refused(broken.enroll(token())));
    const unreachable = await registered({ jwksUri: 'https://127.0.0.1:1/jwks', allowPrivateAddresses: true });
    answers.push(await refused(unreachable.enroll(token())));
    const privateByDefault = await registered({ jwksUri: 'https://127.0.0.1:1/jwks' });
    answers.push(await refused(privateByDefault.enroll(token())));
    const forged = await registered({ allowPrivateAddresses: true });
    answers.push(
      await refused(
        forged.enroll({
          $case: 'serviceAccountToken',
          value: jwt(
            generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey,
            JSON.parse(Buffer.from(token().value.split('.')[1]!, 'base64url').toString()),
          ),
        }),
      ),
    );
    answers.push(await refused(forged.enroll(token({ aud: 'other' }))));
    const noIdentity = uniqueName('k');
    expect((await cp.admin.post('/clusters', { name: noIdentity })).status).toBe(201);
    const plain = new TestAgent(cp.cp.grpcAddress, caPem, noIdentity);
    agents.push(plain);
    answers.push(await refused(plain.enroll(token())));
    expect(count('/broken/jwks')).toBe(1); // the broken issuer really was asked, and answered 500
    for (const f of answers) expect(f).toMatchObject(GENERIC);
    expect(new Set(answers.map((f) => f.details)).size).toBe(1);
    expect(answers[0]!.details).not.toMatch(/HTTP|500|ECONN|127\.0\.0\.1|refused|timeout|internal detail/i);
  });
});
