import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type * as k8s from '@kubernetes/client-node';
import { createLogger } from '@sigil/logging';
import { KubeClient, kubeconfigAccess } from '../../apps/agent/src/kube/kube-client.js';
import { ManagedSecretWatch, type SecretRef } from '../../apps/agent/src/secret-watch.js';
import { eventually } from '../harness/eventually.js';
import { createNamespace, kubeConfig, testEnv } from '../harness/test-env.js';

// The agent's list-then-watch on the real kube-apiserver: it starts at the list's
// resourceVersion, carries metadata only, and lists again after every gap (here: the server
// ending each watch after 1 s), so a change made while no watch is open is still seen.

describe('ManagedSecretWatch on a real kube-apiserver', () => {
  let core: k8s.CoreV1Api;
  let ns: string;
  const lists: SecretRef[][] = [];
  const events: Array<{ phase: string; ref: SecretRef }> = [];
  let watch: ManagedSecretWatch;
  const managed = (name: string) => ({
    metadata: { name, labels: { 'app.kubernetes.io/managed-by': 'sigil' } },
    stringData: { VALUE: 'never-in-the-watch' },
  });

  beforeAll(async () => {
    const k8sLib = await import('@kubernetes/client-node');
    core = (await kubeConfig()).makeApiClient(k8sLib.CoreV1Api);
    ns = await createNamespace('watch');
    await core.createNamespacedSecret({ namespace: ns, body: managed('before') });
    await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'unmanaged' }, stringData: { V: 'x' } } });
    watch = new ManagedSecretWatch(
      new KubeClient(kubeconfigAccess(testEnv().kube.kubeconfig)),
      `/api/v1/namespaces/${ns}/secrets`,
      { listed: (items) => lists.push(items), changed: (phase, ref) => events.push({ phase, ref }) },
      createLogger('test', 'warn'),
      1,
    );
    void watch.run();
  });

  afterAll(() => watch.stop());

  it('lists the managed Secrets only, then watches from that list on', async () => {
    await eventually('first list', () => Promise.resolve(lists.length >= 1 ? true : undefined));
    expect(lists[0]!.map((r) => r.name)).toEqual(['before']);
    expect(lists[0]![0]!.resourceVersion).toMatch(/^\d+$/);
    await core.createNamespacedSecret({ namespace: ns, body: managed('after') });
    const added = await eventually('ADDED event', () => Promise.resolve(events.find((e) => e.phase === 'ADDED' && e.ref.name === 'after')));
    expect(added.ref.namespace).toBe(ns);
    // Events of the Secrets already listed are not replayed as ADDED: the watch started at the list.
    expect(events.some((e) => e.phase === 'ADDED' && e.ref.name === 'before')).toBe(false);
  });

  it('lists again after the watch ends, so a change made in between is seen', async () => {
    const seen = lists.length;
    await core.deleteNamespacedSecret({ namespace: ns, name: 'before' });
    await eventually(
      'a later list without the deleted Secret',
      () => Promise.resolve(lists.length > seen && !lists.at(-1)!.some((r) => r.name === 'before') ? true : undefined),
      10_000,
    );
    expect(lists.at(-1)!.map((r) => r.name)).toEqual(['after']);
  });

  it('lists an empty namespace as empty (the server sends items: null) and then sees what appears there', async () => {
    const empty = await createNamespace('watch-empty');
    const emptyLists: SecretRef[][] = [];
    const seen: string[] = [];
    const w = new ManagedSecretWatch(
      new KubeClient(kubeconfigAccess(testEnv().kube.kubeconfig)),
      `/api/v1/namespaces/${empty}/secrets`,
      { listed: (items) => emptyLists.push(items), changed: (phase, ref) => seen.push(`${phase} ${ref.name}`) },
      createLogger('test', 'warn'),
    );
    void w.run();
    try {
      await eventually('empty list', () => Promise.resolve(emptyLists.length >= 1 ? true : undefined), 3_000);
      expect(emptyLists[0]).toEqual([]);
      await core.createNamespacedSecret({ namespace: empty, body: managed('first') });
      await eventually('ADDED first', () => Promise.resolve(seen.includes('ADDED first') ? true : undefined), 3_000);
    } finally {
      w.stop();
    }
  });

  it('carries metadata only: no Secret data ever reaches the agent through the watch', async () => {
    const kube = new KubeClient(kubeconfigAccess(testEnv().kube.kubeconfig));
    const list = await kube.request<{ kind: string; items: Array<Record<string, unknown>> }>(
      'GET',
      `/api/v1/namespaces/${ns}/secrets?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dsigil`,
      undefined,
      undefined,
      'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json',
    );
    expect(list.kind).toBe('PartialObjectMetadataList');
    expect(list.items.every((i) => !('data' in i))).toBe(true);
  });
});
