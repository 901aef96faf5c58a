import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { CoreV1Api } from '@kubernetes/client-node';
import { dns1123LabelProblem, dns1123SubdomainProblem, secretKeyProblem } from '@sigil/kubernetes';
import { SECRET_TYPES, typeProblems } from '../../apps/control-plane/src/common/secret-types.js';
import { parseValues } from '../../apps/control-plane/src/secrets/secrets.service.js';
import { createNamespace, kubeConfig } from '../harness/test-env.js';

/**
 * Whatever Sigil's validation accepts, the real kube-apiserver must accept (server-side dry
 * run, nothing stored), or a delivery would fail later in every cluster. Sigil may be
 * stricter; where it is, STRICTER lists it and why.
 */
let core: CoreV1Api;
let namespace: string;

const STRICTER: Record<string, string> = {
  // Namespaces, app, project and cluster names are DNS-1123 labels on both sides: no divergence.
  // Secret names are DNS-1123 subdomains on both sides.
  // Secret types: Sigil writes only the five types it knows; Kubernetes accepts any type name.
  'type:example.com/custom': 'Sigil only writes the types whose key rules it checks (SECRET_TYPES)',
  // tls.crt / tls.key: Kubernetes only requires the keys to exist; Sigil also parses them and checks they match.
  'tls:garbage': 'Sigil parses the certificate and key and checks they belong together',
  // dockerconfigjson: both parse the JSON; Sigil also requires an "auths" object.
  'dockerconfigjson:{}': 'Sigil requires the "auths" object a kubelet needs to pull',
};

async function kubeAccepts(create: () => Promise<unknown>): Promise<true | string> {
  try {
    await create();
    return true;
  } catch (err) {
    const e = err as { code?: number; body?: unknown };
    if (e.code === 422 || e.code === 400) return String(typeof e.body === 'string' ? e.body : JSON.stringify(e.body)).slice(0, 400);
    throw err;
  }
}

const secret = (name: string, type: string, data: Record<string, string>) =>
  core.createNamespacedSecret({ namespace, dryRun: 'All', body: { metadata: { name }, type, data } });
const b64 = (v: string) => Buffer.from(v).toString('base64');

const NAME_INPUTS = (() => {
  const a = (n: number) => 'a'.repeat(n);
  const dotted = (n: number) => `${a(61)}.${a(n - 62)}`;
  return [
    '',
    'a',
    '0',
    '-',
    '.',
    '..',
    'a.',
    '.a',
    'a-',
    '-a',
    'a..b',
    'a.b',
    'a-b',
    'a_b',
    'A',
    'aB',
    'é',
    'ß',
    'a b',
    'a/b',
    'a:b',
    a(62),
    a(63),
    a(64),
    `${a(63)}.${a(63)}`,
    dotted(252),
    dotted(253),
    dotted(254),
    `${a(63)}.${a(63)}.${a(63)}.${a(61)}`,
    `${a(63)}.${a(63)}.${a(63)}.${a(62)}`,
    'a.-b',
    'a-.b',
    '1.2.3',
    'xn--bcher-kva',
    'a\u0000b',
    'a\nb',
    '０',
  ];
})();

const KEY_INPUTS = [
  '',
  'a',
  '.',
  '..',
  '...',
  '..a',
  '.a',
  'a.',
  'a..b',
  '.dockerconfigjson',
  '..data',
  '_a',
  '-a',
  'a-',
  'A_B-c.d',
  'a b',
  'a/b',
  'é',
  'a:b',
  'a'.repeat(253),
  'a'.repeat(254),
  `.${'a'.repeat(252)}`,
  'tls.crt',
  'ssh-privatekey',
  '$x',
  'a=b',
  'a\u0000b',
];

beforeAll(async () => {
  const k8s = await import('@kubernetes/client-node');
  core = (await kubeConfig()).makeApiClient(k8s.CoreV1Api);
  namespace = await createNamespace('parity');
});

afterAll(() => undefined);

describe('Sigil validation vs the kube-apiserver (dry run)', () => {
  it('every namespace, app, project and cluster name Sigil accepts is a Namespace name Kubernetes accepts', async () => {
    const divergent: string[] = [];
    for (const name of NAME_INPUTS) {
      if (dns1123LabelProblem(name)) continue;
      const verdict = await kubeAccepts(() => core.createNamespace({ dryRun: 'All', body: { metadata: { name } } }));
      if (verdict !== true) divergent.push(`${JSON.stringify(name)}: ${verdict}`);
    }
    expect(divergent).toEqual([]);
  });

  it('every secret name Sigil accepts is a Secret name Kubernetes accepts', async () => {
    const divergent: string[] = [];
    let accepted = 0;
    for (const name of NAME_INPUTS) {
      if (dns1123SubdomainProblem(name)) continue;
      accepted++;
      const verdict = await kubeAccepts(() => secret(name, 'Opaque', { k: b64('v') }));
      if (verdict !== true) divergent.push(`${JSON.stringify(name)}: ${verdict}`);
    }
    expect(divergent).toEqual([]);
    expect(accepted).toBeGreaterThan(5);
  });

  it('every secret key Sigil accepts is a key Kubernetes accepts', async () => {
    const divergent: string[] = [];
    for (const key of KEY_INPUTS) {
      if (secretKeyProblem(key)) continue;
      const verdict = await kubeAccepts(() => secret('keys', 'Opaque', { [key]: b64('v') }));
      if (verdict !== true) divergent.push(`${JSON.stringify(key)}: ${verdict}`);
    }
    expect(divergent).toEqual([]);
    // The reported case: Kubernetes refuses keys starting with '..'; so must Sigil.
    expect(secretKeyProblem('..a')).toBeDefined();
  });

  it('every typed secret Sigil accepts, Kubernetes accepts; the required keys per type agree', async () => {
    const cases: Array<[string, Record<string, string>]> = [
      ['kubernetes.io/basic-auth', { username: 'u' }],
      ['kubernetes.io/basic-auth', { password: 'p' }],
      ['kubernetes.io/basic-auth', { other: 'x' }],
      ['kubernetes.io/basic-auth', {}],
      ['kubernetes.io/ssh-auth', { 'ssh-privatekey': 'k' }],
      ['kubernetes.io/ssh-auth', { other: 'k' }],
      ['kubernetes.io/dockerconfigjson', { '.dockerconfigjson': '{"auths":{}}' }],
      ['kubernetes.io/dockerconfigjson', { '.dockerconfigjson': '{}' }],
      ['kubernetes.io/dockerconfigjson', { '.dockerconfigjson': 'not json' }],
      ['kubernetes.io/dockerconfigjson', { other: '{"auths":{}}' }],
      ['kubernetes.io/tls', { 'tls.crt': 'garbage', 'tls.key': 'garbage' }],
      ['kubernetes.io/tls', { 'tls.crt': 'x' }],
      ['Opaque', { a: 'b' }],
    ];
    const divergent: string[] = [];
    for (const [type, data] of cases) {
      const values = new Map(Object.entries(data).map(([k, v]) => [k, Buffer.from(v)]));
      if (Object.keys(data).length === 0 || typeProblems(type, values).length > 0) continue;
      const verdict = await kubeAccepts(() => secret('typed', type, Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)]))));
      if (verdict !== true) divergent.push(`${type} ${JSON.stringify(Object.keys(data))}: ${verdict}`);
    }
    expect(divergent).toEqual([]);
    for (const t of SECRET_TYPES)
      expect(await kubeAccepts(() => secret('typed', t, {}))).toEqual(t === 'Opaque' ? true : expect.any(String));
    expect(Object.keys(STRICTER).length).toBeGreaterThan(0);
  });

  it('the largest secret Sigil accepts fits in a Kubernetes Secret', async () => {
    // 1 MiB in total (keys + values) is Sigil's limit; the apiserver's is on the whole object.
    const value = 'x'.repeat(1024 * 1024 - 1);
    const values = parseValues({ data: { k: value } }, 'Opaque');
    expect(values.size).toBe(1);
    expect(await kubeAccepts(() => secret('large', 'Opaque', { k: Buffer.from(value).toString('base64') }))).toBe(true);
    expect(() => parseValues({ data: { k: `${value}x` } }, 'Opaque')).toThrow();
  });
});
