import { describe, expect, it } from '@jest/globals';
import { KubeError, type KubeClient } from './kube/kube-client.js';
import type { Secret } from './kube/types.js';
import { checksumOf, holdsExactly, KubeSecrets, type SecretToWrite } from './kube-secrets.js';
import { ANNOTATION_CHECKSUM, ANNOTATION_CLUSTER, ANNOTATION_SOURCE, LABEL_APP, MANAGED_BY, MANAGED_BY_SIGIL } from './labels.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('holdsExactly (data compared, not the checksum annotation)', () => {
  const values = () => new Map([['PASSWORD', Buffer.from('v1')]]);

  it('is true only for the same keys with the same bytes', () => {
    expect(holdsExactly({ PASSWORD: b64('v1') }, values())).toBe(true);
    expect(holdsExactly({ PASSWORD: b64('v2') }, values())).toBe(false);
    expect(holdsExactly({ PASSWORD: b64('v11') }, values())).toBe(false);
    expect(holdsExactly({ PASSWORD: b64('v1'), EXTRA: b64('x') }, values())).toBe(false);
    expect(holdsExactly({ OTHER: b64('v1') }, values())).toBe(false);
    expect(holdsExactly(undefined, values())).toBe(false);
    expect(holdsExactly({ toString: b64('v1') }, new Map([['toString', Buffer.from('v1')]]))).toBe(true);
  });
});

/**
 * The Secrets API as the kube-apiserver answers it, in memory: resourceVersions, 409 on a stale
 * one or on creating what exists, 404, a namespace that refuses writes (403), and a way to change
 * a Secret between the writer's read and its write (another writer racing it).
 */
class FakeSecretsApi {
  readonly secrets = new Map<string, Secret>();
  readonly calls: string[] = [];
  readonly namespaces = new Set(['shop', 'other']);
  forbidden = new Set<string>();
  /** Runs once, just before the next PUT or POST is applied. */
  beforeNextWrite: (() => void) | undefined;
  private rv = 100;

  seed(s: Secret): Secret {
    const stored = structuredClone(s);
    stored.metadata = { ...stored.metadata, resourceVersion: String(++this.rv) };
    this.secrets.set(`${stored.metadata.namespace}/${stored.metadata.name}`, stored);
    return stored;
  }

  request<T>(method: string, path: string, body?: unknown): Promise<T> {
    this.calls.push(`${method} ${path}`);
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/secrets(?:\/([^/?]+))?/.exec(path);
    if (!m) return Promise.reject(new KubeError(404, 'NotFound'));
    const [ns, name] = [decodeURIComponent(m[1]!), m[2] && decodeURIComponent(m[2])];
    if (!this.namespaces.has(ns)) return Promise.reject(new KubeError(404, 'NotFound'));
    const key = `${ns}/${name}`;
    const existing = this.secrets.get(key);
    switch (method) {
      case 'GET':
        return existing ? Promise.resolve(structuredClone(existing) as T) : Promise.reject(new KubeError(404, 'NotFound'));
      case 'DELETE': {
        if (!existing) return Promise.reject(new KubeError(404, 'NotFound'));
        const want = (body as { preconditions?: { resourceVersion?: string } } | undefined)?.preconditions?.resourceVersion;
        if (want !== undefined && want !== existing.metadata?.resourceVersion) return Promise.reject(new KubeError(409, 'Conflict'));
        this.secrets.delete(key);
        return Promise.resolve({} as T);
      }
      case 'POST':
      case 'PUT': {
        if (this.forbidden.has(ns)) return Promise.reject(new KubeError(403, 'Forbidden'));
        const race = this.beforeNextWrite;
        this.beforeNextWrite = undefined;
        race?.();
        const s = body as Secret;
        const target = `${ns}/${s.metadata!.name}`;
        const current = this.secrets.get(target);
        if (method === 'POST' && current) return Promise.reject(new KubeError(409, 'AlreadyExists'));
        if (method === 'PUT' && (!current || current.metadata?.resourceVersion !== s.metadata?.resourceVersion))
          return Promise.reject(new KubeError(409, 'Conflict'));
        return Promise.resolve(this.seed(s) as T);
      }
      default:
        return Promise.reject(new KubeError(405, 'MethodNotAllowed'));
    }
  }
}

const SOURCE = 'project-1/shop/db';

/** A Secret to write whose values are `data`; counts how often it was decrypted. */
function toWrite(data: Record<string, string>, over: Partial<SecretToWrite> = {}): SecretToWrite & { opened: () => number } {
  let opened = 0;
  const envelope = Buffer.from(JSON.stringify(data)); // stands for the ciphertext: changes with the values
  return {
    namespace: 'shop',
    name: 'db',
    type: 'Opaque',
    app: 'shop',
    source: SOURCE,
    secretId: 'secret-1',
    version: 1,
    generation: 7n,
    envelope,
    clusterId: 'cluster-1',
    open: () => {
      opened++;
      return new Map(Object.entries(data).map(([k, v]) => [k, Buffer.from(v)]));
    },
    ownerRetired: () => false,
    opened: () => opened,
    ...over,
  };
}

const setUp = (namespaces: string[] | undefined = ['shop']) => {
  const api = new FakeSecretsApi();
  return { api, secrets: new KubeSecrets(api as unknown as KubeClient, namespaces) };
};

const managed = (over: { source?: string; cluster?: string; data?: Record<string, string>; checksum?: string } = {}): Secret => ({
  apiVersion: 'v1',
  kind: 'Secret',
  type: 'Opaque',
  metadata: {
    name: 'db',
    namespace: 'shop',
    labels: { [MANAGED_BY]: MANAGED_BY_SIGIL },
    annotations: {
      [ANNOTATION_SOURCE]: over.source ?? SOURCE,
      [ANNOTATION_CLUSTER]: over.cluster ?? 'cluster-1',
      ...(over.checksum ? { [ANNOTATION_CHECKSUM]: over.checksum } : {}),
    },
  },
  data: over.data ?? { PASSWORD: b64('old') },
});

describe('KubeSecrets.write, against a fake Secrets API', () => {
  it('creates a Secret with the managed-by label, the source and checksum annotations, and the values', async () => {
    const { api, secrets } = setUp();
    const s = toWrite({ PASSWORD: 'v1' });
    const out = await secrets.write(s);
    expect(out).toMatchObject({ state: 'applied', changed: true });
    const stored = api.secrets.get('shop/db')!;
    expect(stored.metadata?.labels).toEqual({ [MANAGED_BY]: MANAGED_BY_SIGIL, [LABEL_APP]: 'shop' });
    expect(stored.metadata?.annotations).toMatchObject({
      [ANNOTATION_SOURCE]: SOURCE,
      [ANNOTATION_CLUSTER]: 'cluster-1',
      [ANNOTATION_CHECKSUM]: checksumOf(s.envelope),
      'sigil.dev/version': '1',
      'sigil.dev/generation': '7',
    });
    expect(stored.data).toEqual({ PASSWORD: b64('v1') });
    expect(out.state === 'applied' && out.resourceVersion).toBe(stored.metadata?.resourceVersion);
  });

  it('zeroes the decrypted values once written', async () => {
    const { secrets } = setUp();
    const seen: Buffer[] = [];
    const s = toWrite({ PASSWORD: 'v1' });
    const open = () => s.open();
    await secrets.write({
      ...s,
      open: () => {
        const v = open();
        seen.push(...v.values());
        return v;
      },
    });
    expect(seen).toHaveLength(1);
    expect(seen[0]!.equals(Buffer.alloc(2))).toBe(true);
  });

  it('leaves a Secret that holds the values alone; without decrypting when the resourceVersion is the one it wrote', async () => {
    const { api, secrets } = setUp();
    const first = await secrets.write(toWrite({ PASSWORD: 'v1' }));
    const rv = first.state === 'applied' ? first.resourceVersion : undefined;

    const again = toWrite({ PASSWORD: 'v1' });
    expect(await secrets.write(again, rv)).toEqual({ state: 'applied', changed: false, resourceVersion: rv });
    expect(again.opened()).toBe(0);

    // Not known: compared by its data, still not rewritten.
    const unknown = toWrite({ PASSWORD: 'v1' });
    expect(await secrets.write(unknown)).toEqual({ state: 'applied', changed: false, resourceVersion: rv });
    expect(unknown.opened()).toBe(1);
    expect(api.calls.filter((c) => !c.startsWith('GET'))).toEqual(['POST /api/v1/namespaces/shop/secrets']);
  });

  it('rewrites a Secret edited by hand although its checksum annotation still matches (drift)', async () => {
    const { api, secrets } = setUp();
    const s = toWrite({ PASSWORD: 'v1' });
    await secrets.write(s);
    api.secrets.get('shop/db')!.data = { PASSWORD: b64('tampered') };
    expect(await secrets.write(toWrite({ PASSWORD: 'v1' }))).toMatchObject({ state: 'applied', changed: true });
    expect(api.secrets.get('shop/db')!.data).toEqual({ PASSWORD: b64('v1') });
  });

  it('updates with the resourceVersion it read, and reads again when another writer got in between (409)', async () => {
    const { api, secrets } = setUp();
    api.seed(managed());
    api.beforeNextWrite = () => api.seed(managed({ data: { PASSWORD: b64('someone-else') } }));
    expect(await secrets.write(toWrite({ PASSWORD: 'v2' }))).toMatchObject({ state: 'applied', changed: true });
    expect(api.secrets.get('shop/db')!.data).toEqual({ PASSWORD: b64('v2') });
    expect(api.calls.filter((c) => c.startsWith('PUT'))).toHaveLength(2);
  });

  it('never touches a Secret without the managed-by label, nor one another source owns', async () => {
    const { api, secrets } = setUp();
    const mine = api.seed({ ...managed(), metadata: { ...managed().metadata, labels: {} } });
    expect(await secrets.write(toWrite({ PASSWORD: 'v1' }))).toEqual({ state: 'conflict', holder: 'unmanaged' });
    expect(api.secrets.get('shop/db')).toEqual(mine);

    const other = api.seed(managed({ source: 'project-2/web/db' }));
    expect(await secrets.write(toWrite({ PASSWORD: 'v1' }))).toEqual({ state: 'conflict', holder: 'other-owner' });
    expect(api.secrets.get('shop/db')).toEqual(other);
  });

  it('takes over a Secret it wrote for an owner its desired state retired; not one another cluster wrote', async () => {
    const { api, secrets } = setUp();
    api.seed(managed({ source: 'project-1/old-app/db' }));
    const handedOver = toWrite({ PASSWORD: 'v1' }, { ownerRetired: (owner) => owner === 'project-1/old-app/db' });
    expect(await secrets.write(handedOver)).toMatchObject({ state: 'applied', changed: true });
    expect(api.secrets.get('shop/db')!.metadata?.annotations?.[ANNOTATION_SOURCE]).toBe(SOURCE);

    api.seed(managed({ source: 'project-1/old-app/db', cluster: 'cluster-2' }));
    expect(await secrets.write(handedOver)).toEqual({ state: 'conflict', holder: 'other-owner' });
  });

  it('replaces a Secret whose type changed (the type is immutable): delete at the version read, then create', async () => {
    const { api, secrets } = setUp();
    api.seed(managed());
    const tls = toWrite({ 'tls.crt': 'c', 'tls.key': 'k' }, { type: 'kubernetes.io/tls' });
    expect(await secrets.write(tls)).toMatchObject({ state: 'applied', changed: true });
    expect(api.secrets.get('shop/db')!.type).toBe('kubernetes.io/tls');
    expect(api.calls.filter((c) => !c.startsWith('GET'))).toEqual([
      'DELETE /api/v1/namespaces/shop/secrets/db',
      'POST /api/v1/namespaces/shop/secrets',
    ]);
  });

  it('reports what Kubernetes refused with a reason, never a value', async () => {
    const { api, secrets } = setUp(['shop', 'gone', 'other']);
    api.forbidden.add('other');
    expect(await secrets.write(toWrite({ PASSWORD: 'v1-secret' }, { namespace: 'other' }))).toEqual({
      state: 'failed',
      reason: 'Forbidden',
      message: 'the agent may not write Secrets in this namespace',
    });
    const missing = await secrets.write(toWrite({ PASSWORD: 'v1-secret' }, { namespace: 'gone' }));
    expect(missing).toEqual({ state: 'failed', reason: 'NamespaceNotFound', message: 'namespace gone does not exist' });
    expect(JSON.stringify(missing)).not.toContain('v1-secret');
  });

  it('gives up after three conflicting rounds', async () => {
    const { api, secrets } = setUp();
    api.seed(managed());
    let races = 0;
    const race = () => {
      races++;
      api.seed(managed({ data: { PASSWORD: b64(`race-${races}`) } }));
      api.beforeNextWrite = race;
    };
    api.beforeNextWrite = race;
    expect(await secrets.write(toWrite({ PASSWORD: 'v1' }))).toEqual({
      state: 'failed',
      reason: 'WriteConflict',
      message: 'the Secret kept changing while being written',
    });
    expect(races).toBe(3);
  });

  it('writes nothing in a namespace it does not serve, whatever the API would allow', async () => {
    const { api, secrets } = setUp(['shop']);
    expect(await secrets.write(toWrite({ PASSWORD: 'v1' }, { namespace: 'other' }))).toMatchObject({
      state: 'failed',
      reason: 'NamespaceNotServed',
    });
    expect(await secrets.delete('other', 'db', 'cluster-1')).toBe('conflict');
    expect(api.calls).toEqual([]);
  });
});

describe('KubeSecrets.delete and listManaged', () => {
  it('deletes a managed Secret at the version read; leaves an unmanaged one; absent is absent', async () => {
    const { api, secrets } = setUp();
    api.seed(managed());
    expect(await secrets.delete('shop', 'db', 'cluster-1')).toBe('deleted');
    expect(api.secrets.has('shop/db')).toBe(false);
    expect(await secrets.delete('shop', 'db', 'cluster-1')).toBe('absent');
    api.seed({ ...managed(), metadata: { ...managed().metadata, labels: {} } });
    expect(await secrets.delete('shop', 'db', 'cluster-1')).toBe('conflict');
    expect(api.secrets.has('shop/db')).toBe(true);
  });

  it('leaves a managed Secret another cluster’s agent (or no agent) wrote', async () => {
    const { api, secrets } = setUp();
    api.seed(managed({ cluster: 'cluster-2' }));
    expect(await secrets.delete('shop', 'db', 'cluster-1')).toBe('conflict');
    const unrecorded = managed();
    delete unrecorded.metadata!.annotations![ANNOTATION_CLUSTER];
    api.seed(unrecorded);
    expect(await secrets.delete('shop', 'db', 'cluster-1')).toBe('conflict');
    expect(api.secrets.has('shop/db')).toBe(true);
    expect(api.calls.filter((c) => c.startsWith('DELETE'))).toEqual([]);
  });

  it('lists only what carries the managed-by label, per namespace served', async () => {
    const api = {
      calls: [] as string[],
      request(_method: string, path: string) {
        this.calls.push(path);
        return Promise.resolve({ items: [{ metadata: { namespace: path.split('/')[4], name: 'db' } }] });
      },
    };
    const secrets = new KubeSecrets(api as unknown as KubeClient, ['shop', 'other']);
    expect(await secrets.listManaged(['shop', 'other'])).toEqual([
      { namespace: 'shop', name: 'db' },
      { namespace: 'other', name: 'db' },
    ]);
    const selector = `?labelSelector=${encodeURIComponent('app.kubernetes.io/managed-by=sigil')}`;
    expect(api.calls).toEqual([`/api/v1/namespaces/shop/secrets${selector}`, `/api/v1/namespaces/other/secrets${selector}`]);
  });
});
