import { describe, expect, it } from '@jest/globals';
import { DeliveryMode, DesiredSecret, DesiredState } from './gen/sigil/agent/v1/agent.js';
import {
  CONSUMER_OVERHEAD_BYTES,
  DESIRED_SECRET_OVERHEAD_BYTES,
  DESIRED_STATE_PAGE_BYTES,
  MAX_AGENT_MESSAGE_BYTES,
  MAX_APP_CONSUMERS,
  MAX_SECRET_PAYLOAD_BYTES,
} from './limits.js';

describe('agent protocol limits', () => {
  it('bounds what a secret costs on the wire beyond its ciphertext, with every name at its longest', () => {
    const ciphertext = 1_398_200; // a 1 MiB value's payload plus the GCM tag
    const longest = (n: number) => 'a'.repeat(n);
    const res = DesiredState.encode({
      generation: 2n ** 63n - 1n,
      baseGeneration: 2n ** 63n - 1n,
      part: 2 ** 32 - 1,
      more: true,
      secretCount: 2 ** 32 - 1,
      unchanged: [],
      secrets: [
        {
          projectId: '3f1c0a9d-5e7b-4c44-86f0-a1b2c3d4e5f6',
          app: longest(63),
          secret: longest(253),
          secretId: '3f1c0a9d-5e7b-4c44-86f0-a1b2c3d4e5f6',
          version: 2 ** 31 - 1,
          target: { namespace: longest(63), name: longest(253) },
          type: 'kubernetes.io/service-account-token',
          deliveryMode: DeliveryMode.DELIVERY_MODE_VOLUME,
          consumers: [],
          // SGE1: magic, key version, wrapped-key length, a 40-byte AES-KWP data key, IV, ciphertext
          envelope: Buffer.alloc(4 + 4 + 2 + 40 + 12 + ciphertext),
          generation: 2n ** 63n - 1n,
        },
      ],
      clusterKeyEnvelopes: [],
    }).finish();
    expect(res.length - ciphertext).toBeLessThanOrEqual(DESIRED_SECRET_OVERHEAD_BYTES);
  });

  it('bounds what each consumer adds to a DesiredSecret, with both names at their longest', () => {
    const secret = (consumers: number) =>
      DesiredSecret.encode({
        projectId: '',
        app: 'a',
        secret: 's',
        secretId: '',
        version: 1,
        target: { namespace: 'n', name: 's' },
        type: 'Opaque',
        deliveryMode: DeliveryMode.DELIVERY_MODE_INJECT,
        consumers: Array.from({ length: consumers }, () => ({ namespace: 'n'.repeat(63), serviceAccount: 's'.repeat(253) })),
        envelope: Buffer.alloc(0),
        generation: 1n,
      }).finish().length;
    expect(secret(MAX_APP_CONSUMERS) - secret(0)).toBeLessThanOrEqual(MAX_APP_CONSUMERS * CONSUMER_OVERHEAD_BYTES);
    // Not far above it either: the estimate sizes pages.
    expect(secret(1) - secret(0)).toBeGreaterThan(CONSUMER_OVERHEAD_BYTES - 16);
  });

  it('fits the largest secret in a page, and a page in a message', () => {
    expect(MAX_SECRET_PAYLOAD_BYTES + 16 + DESIRED_SECRET_OVERHEAD_BYTES + MAX_APP_CONSUMERS * CONSUMER_OVERHEAD_BYTES).toBeLessThanOrEqual(
      DESIRED_STATE_PAGE_BYTES,
    );
    expect(DESIRED_STATE_PAGE_BYTES * 1.5).toBeLessThanOrEqual(MAX_AGENT_MESSAGE_BYTES);
  });
});
