import { describe, expect, it } from '@jest/globals';
import type { PinoLogger } from 'nestjs-pino';
import { MetricsService } from '../metrics/metrics.service.js';
import type { GrantRow, GrantsRepository } from './grants.repository.js';
import { GrantsService, MAX_PENDING_GRANTS, type ReportedGrant } from './grants.service.js';

const ID = '3f1c0a9d-5e7b-4c44-86f0-a1b2c3d4e5f6';
const at = (s: number) => new Date(Date.UTC(2026, 11, 2, 7, 0, s));
const grant = (g: Partial<ReportedGrant> = {}): ReportedGrant => ({
  secretId: ID,
  version: 1,
  namespace: 'shop',
  serviceAccount: 'checkout',
  pod: 'p1',
  count: 1,
  lastAt: at(0),
  ...g,
});

/** A repository that records what it is asked to write, keeps `keep` of each batch, and fails while `failing`. */
function fakeRepo() {
  const calls: GrantRow[][] = [];
  const repo = {
    failing: false,
    keep: Infinity,
    calls,
    record: (rows: GrantRow[]) => {
      calls.push(rows.map((r) => ({ ...r })));
      return repo.failing ? Promise.reject(new Error('database down')) : Promise.resolve(Math.min(rows.length, repo.keep));
    },
  };
  return repo;
}
const logger = { setContext: () => undefined, warn: () => undefined } as unknown as PinoLogger;
const counted = async (m: MetricsService, outcome: string) =>
  (await m.injectionGrants.get()).values.find((v) => v.labels.outcome === outcome)?.value ?? 0;

describe('GrantsService', () => {
  it('merges grants of one cluster, secret and namespace/SA into one row per statement: counts add, the latest wins', async () => {
    const repo = fakeRepo();
    const metrics = new MetricsService();
    const svc = new GrantsService(repo as unknown as GrantsRepository, metrics, logger);
    svc.add('c1', [grant({ count: 2, lastAt: at(5), pod: 'late', version: 2 }), grant({ lastAt: at(1), pod: 'early' })]);
    svc.add('c1', [grant({ serviceAccount: 'other' })]);
    svc.add('c2', [grant()]);
    await svc.onModuleDestroy();
    expect(repo.calls).toHaveLength(1);
    const rows = repo.calls[0]!;
    expect(rows).toHaveLength(3);
    expect(rows[0]).toEqual({
      clusterId: 'c1',
      secretId: ID,
      namespace: 'shop',
      serviceAccount: 'checkout',
      version: 2,
      grants: 3,
      lastPod: 'late',
      firstAt: at(1),
      lastAt: at(5),
    });
    expect(await counted(metrics, 'recorded')).toBe(3);
  });

  it('counts rows the repository did not keep as ignored', async () => {
    const repo = fakeRepo();
    repo.keep = 1;
    const metrics = new MetricsService();
    const svc = new GrantsService(repo as unknown as GrantsRepository, metrics, logger);
    svc.add('c1', [grant(), grant({ namespace: 'a' }), grant({ namespace: 'b' })]);
    await svc.flush();
    expect([await counted(metrics, 'recorded'), await counted(metrics, 'ignored')]).toEqual([1, 2]);
  });

  it('keeps a failed batch and writes it, merged with newer grants, once the database is back', async () => {
    const repo = fakeRepo();
    repo.failing = true;
    const svc = new GrantsService(repo as unknown as GrantsRepository, new MetricsService(), logger);
    svc.add('c1', [grant({ count: 2 })]);
    await svc.flush();
    expect(svc.size).toBe(1);
    svc.add('c1', [grant({ count: 5, lastAt: at(9), pod: 'p9' })]);
    repo.failing = false;
    await svc.onModuleDestroy();
    expect(repo.calls.at(-1)).toEqual([expect.objectContaining({ grants: 7, lastPod: 'p9', firstAt: at(0), lastAt: at(9) })]);
    expect(svc.size).toBe(0);
  });

  it('drops and counts grants beyond MAX_PENDING_GRANTS rows waiting', async () => {
    const metrics = new MetricsService();
    const svc = new GrantsService(fakeRepo() as unknown as GrantsRepository, metrics, logger);
    const many = Array.from({ length: MAX_PENDING_GRANTS + 3 }, (_, i) => grant({ namespace: `ns-${i}` }));
    expect(svc.add('c1', many)).toBe(3);
    expect(svc.size).toBe(MAX_PENDING_GRANTS);
    // A grant for a row already waiting still merges into it.
    expect(svc.add('c1', [grant({ namespace: 'ns-0' })])).toBe(0);
    expect(await counted(metrics, 'dropped')).toBe(3);
    await svc.onModuleDestroy();
  });
});
