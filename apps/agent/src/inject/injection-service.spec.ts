import { describe, expect, it } from '@jest/globals';
import { DeliveryMode, type DesiredSecret } from '@sigil/agent-protocol';
import { type InjectionRefused, InjectionService, type Refusal } from './injection-service.js';
import { InjectionStore } from './injection-store.js';
import { TokenRefused, type PodIdentity, type TokenReviewer } from './token-review.js';

const entry = (over: Partial<DesiredSecret> = {}): DesiredSecret => ({
  projectId: 'p1',
  app: 'pay',
  secret: 'pay-db',
  secretId: 's1',
  version: 1,
  target: { namespace: 'shop', name: 'pay-db' },
  type: 'Opaque',
  deliveryMode: DeliveryMode.DELIVERY_MODE_INJECT,
  envelope: Buffer.from('sealed'),
  generation: 1n,
  consumers: [{ namespace: 'shop', serviceAccount: 'pay' }],
  ...over,
});

const who = (over: Partial<PodIdentity> = {}): PodIdentity => ({
  namespace: 'shop',
  serviceAccount: 'pay',
  pod: 'pay-1',
  podUid: 'u1',
  ...over,
});

function service(entries: DesiredSecret[], opts: { token?: PodIdentity | 'refuse'; serves?: string[] } = {}) {
  const store = new InjectionStore();
  for (const e of entries) store.hold(e);
  const refusals: Refusal[] = [];
  const opened: Buffer[] = [];
  const reviewer = {
    review: (token: string | undefined) =>
      opts.token === 'refuse' || !token ? Promise.reject(new TokenRefused('token-invalid')) : Promise.resolve(opts.token ?? who()),
  } as unknown as TokenReviewer;
  const svc = new InjectionService({
    store,
    reviewer,
    open: () => {
      const v = Buffer.from('hunter2');
      opened.push(v);
      return new Map([['PASSWORD', v]]);
    },
    serves: (ns) => (opts.serves ? opts.serves.includes(ns) : true),
    logger: { info: () => undefined, warn: () => undefined } as never,
    refused: (r) => refusals.push(r),
    granted: () => undefined,
  });
  return { svc, store, refusals, opened };
}

const reason = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return (err as InjectionRefused).reason;
  }
  return 'allowed';
};

describe('InjectionService', () => {
  it('answers a consumer with the values, zeroes its copies, and records one coalesced grant per pod', async () => {
    const { svc, opened } = service([entry()]);
    const id = await svc.identify('t');
    const a = svc.answer(id, 'pay', svc.authorize(id, 'pay'));
    expect(a.secrets).toEqual([
      { name: 'pay-db', version: 1, type: 'Opaque', data: { PASSWORD: Buffer.from('hunter2').toString('base64') } },
    ]);
    expect(opened.every((b) => b.every((x) => x === 0))).toBe(true);
    svc.answer(id, 'pay', svc.authorize(id, 'pay'));
    const grants = svc.takeGrants();
    expect(grants).toEqual([expect.objectContaining({ secretId: 's1', namespace: 'shop', serviceAccount: 'pay', pod: 'pay-1', count: 2 })]);
    expect(svc.takeGrants()).toEqual([]);
  });

  it('refuses, with a counted reason: unknown app, other service account or namespace, unserved namespace, ambiguous app, bad token', async () => {
    const { svc, refusals } = service([
      entry(),
      entry({ app: 'dup', projectId: 'p1', secretId: 'a', target: { namespace: 'shop', name: 'a' } }),
      entry({ app: 'dup', projectId: 'p2', secretId: 'b', target: { namespace: 'shop', name: 'b' } }),
    ]);
    expect(reason(() => svc.authorize(who(), 'nope'))).toBe('app-not-published');
    expect(reason(() => svc.authorize(who({ serviceAccount: 'other' }), 'pay'))).toBe('not-a-consumer');
    expect(reason(() => svc.authorize(who({ namespace: 'other' }), 'pay'))).toBe('not-a-consumer');
    expect(reason(() => svc.authorize(who(), 'dup'))).toBe('ambiguous-app');
    await expect(svc.identify(undefined)).rejects.toMatchObject({ reason: 'token-invalid' });
    expect(refusals).toEqual(['app-not-published', 'not-a-consumer', 'not-a-consumer', 'ambiguous-app', 'token-invalid']);
    const limited = service([entry()], { serves: ['elsewhere'] });
    expect(reason(() => limited.svc.authorize(who(), 'pay'))).toBe('namespace-not-served');
  });

  it('a wildcard consumer admits every service account of its namespace only', () => {
    const { svc } = service([entry({ consumers: [{ namespace: 'shop', serviceAccount: '*' }] })]);
    expect(reason(() => svc.authorize(who({ serviceAccount: 'any' }), 'pay'))).toBe('allowed');
    expect(reason(() => svc.authorize(who({ namespace: 'x', serviceAccount: 'any' }), 'pay'))).toBe('not-a-consumer');
  });

  it("another project's app of the same name never changes this pod's stamp", () => {
    const mine = entry();
    const theirs = entry({
      projectId: 'p2',
      secretId: 's9',
      target: { namespace: 'other', name: 'x' },
      consumers: [{ namespace: 'other', serviceAccount: '*' }],
    });
    const { svc, store } = service([mine, theirs]);
    const before = svc.authorize(who(), 'pay').stamp;
    store.hold({ ...theirs, version: 2, generation: 2n });
    expect(svc.authorize(who(), 'pay').stamp).toBe(before);
  });

  it('the stamp changes with a new version and wakes a waiting long poll', async () => {
    const { svc, store } = service([entry()]);
    const before = svc.authorize(who(), 'pay').stamp;
    const woke = svc.waitForChange(5_000);
    store.hold(entry({ version: 2, generation: 2n }));
    expect(await woke).toBe(true);
    expect(svc.authorize(who(), 'pay').stamp).not.toBe(before);
    expect(await svc.waitForChange(10)).toBe(false);
  });
});
