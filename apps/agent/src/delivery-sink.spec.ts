import { describe, expect, it } from '@jest/globals';
import { DeliveryMode, SecretFailureReason, type DesiredSecret } from '@sigil/agent-protocol';
import { DeliverySink } from './delivery-sink.js';
import { InjectionStore } from './inject/injection-store.js';
import type { KubeSink } from './kube-sink.js';

const inject = (over: Partial<DesiredSecret> = {}): DesiredSecret => ({
  projectId: 'p',
  app: 'pay',
  secret: 'pay-db',
  secretId: 's',
  version: 1,
  target: { namespace: 'shop', name: 'pay-db' },
  type: 'Opaque',
  deliveryMode: DeliveryMode.DELIVERY_MODE_INJECT,
  envelope: Buffer.from('e'),
  generation: 1n,
  consumers: [{ namespace: 'shop', serviceAccount: 'pay' }],
  ...over,
});

/** The Kubernetes side, recorded: which Secrets were written or deleted, and who owns pay-db. */
function kube(owner: string | undefined) {
  const calls: string[] = [];
  const sink = {
    serves: () => true,
    owner: () => Promise.resolve(owner),
    write: (s: DesiredSecret) => {
      calls.push(`write ${s.target!.name}`);
      return Promise.resolve({ state: 'applied', changed: true });
    },
    delete: (t: { name: string }) => {
      calls.push(`delete ${t.name}`);
      return Promise.resolve('deleted');
    },
    listManaged: () => Promise.resolve([{ namespace: 'shop', name: 'web-db' }]),
  } as unknown as KubeSink;
  return { sink, calls };
}

const values = { open: () => new Map([['K', Buffer.from('v')]]), ownerRetired: () => false };

describe('DeliverySink', () => {
  it('holds an inject secret in memory and writes no Secret; the Secret an earlier mode left is deleted', async () => {
    const store = new InjectionStore();
    const { sink, calls } = kube('p/pay/pay-db');
    const d = new DeliverySink(sink, store, true);
    expect(await d.write(inject(), values)).toEqual({ state: 'applied', changed: true });
    expect(calls).toEqual(['delete pay-db']);
    expect(store.has('shop/pay-db')).toBe(true);
    expect((await d.listManaged()).map((r) => r.name).sort()).toEqual(['pay-db', 'web-db']);
    expect(await d.delete({ namespace: 'shop', name: 'pay-db' })).toBe('deleted');
    expect(store.size).toBe(0);
  });

  it('leaves a Secret of another owner alone', async () => {
    const { sink, calls } = kube('other/app/x');
    await new DeliverySink(sink, new InjectionStore(), true).write(inject(), values);
    expect(calls).toEqual([]);
  });

  it('without --inject, reports an inject secret failed instead of acknowledging what no pod can receive', async () => {
    const store = new InjectionStore();
    const { sink, calls } = kube(undefined);
    const r = await new DeliverySink(sink, store, false).write(inject(), values);
    expect(r).toMatchObject({ state: 'failed', reason: SecretFailureReason.InjectionNotServed });
    expect([calls, store.size]).toEqual([[], 0]);
  });

  it('an env secret becomes a Secret, and leaves injection', async () => {
    const store = new InjectionStore();
    store.hold(inject());
    const { sink, calls } = kube(undefined);
    await new DeliverySink(sink, store, true).write(inject({ deliveryMode: DeliveryMode.DELIVERY_MODE_ENV }), values);
    expect([calls, store.size]).toEqual([['write pay-db'], 0]);
  });
});
