import { describe, expect, it } from '@jest/globals';
import { placementTargets, type ClusterLabels } from './membership.service.js';

const clusters: ClusterLabels[] = [
  { id: 'id-1', name: 'store-1', labels: { tier: 'store', region: 'eu' } },
  { id: 'id-2', name: 'store-2', labels: { tier: 'store', region: 'us' } },
  { id: 'id-3', name: 'lab-1', labels: { tier: 'lab' } },
  { id: 'id-4', name: 'edge-1', labels: {} },
];
const placement = (p: { clusters?: string[]; selectors?: object[]; excluded?: string[] }) => ({
  clusters: p.clusters ?? [],
  selectors: (p.selectors ?? []) as never[],
  excluded: p.excluded ?? [],
});
const targets = (p: Parameters<typeof placement>[0], project: object | null = {}) =>
  [...placementTargets(placement(p), project, clusters)].sort();

describe('placementTargets: the clusters a placement reaches', () => {
  it('reaches clusters by name and by selector, as cluster ids', () => {
    expect(targets({ clusters: ['store-1', 'lab-1'] })).toEqual(['id-1', 'id-3']);
    expect(targets({ selectors: [{ matchLabels: { tier: 'store' } }] })).toEqual(['id-1', 'id-2']);
    expect(targets({ clusters: ['edge-1'], selectors: [{ matchLabels: { region: 'us' } }] })).toEqual(['id-2', 'id-4']);
    // Several selectors: any of them.
    expect(targets({ selectors: [{ matchLabels: { region: 'eu' } }, { matchLabels: { tier: 'lab' } }] })).toEqual(['id-1', 'id-3']);
  });

  it('an empty selector selects every cluster; no names and no selectors select none', () => {
    expect(targets({ selectors: [{}] })).toEqual(['id-1', 'id-2', 'id-3', 'id-4']);
    expect(targets({})).toEqual([]);
  });

  it('leaves out excluded clusters, even when named', () => {
    expect(targets({ selectors: [{ matchLabels: { tier: 'store' } }], excluded: ['store-2'] })).toEqual(['id-1']);
    expect(targets({ clusters: ['store-1'], excluded: ['store-1'] })).toEqual([]);
  });

  it('reaches only clusters the project is allowed on; a project without a cluster selector reaches none', () => {
    expect(targets({ clusters: ['store-1', 'lab-1'] }, { matchLabels: { tier: 'store' } })).toEqual(['id-1']);
    expect(targets({ selectors: [{}] }, { matchExpressions: [{ key: 'tier', operator: 'Exists' }] })).toEqual(['id-1', 'id-2', 'id-3']);
    expect(targets({ clusters: ['store-1'], selectors: [{}] }, null)).toEqual([]);
  });

  it('ignores names of clusters that do not exist', () => {
    expect(targets({ clusters: ['store-9', 'store-1'] })).toEqual(['id-1']);
  });
});
