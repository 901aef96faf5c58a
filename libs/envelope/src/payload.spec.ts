import { describe, expect, it } from '@jest/globals';
import { decodeSecretPayload, encodeSecretPayload } from './payload.js';

describe('secret payload', () => {
  it('round-trips binary values with keys in canonical order', () => {
    const data = new Map([
      ['b.key', Buffer.from([0, 1, 2, 255])],
      ['A', Buffer.from('text')],
    ]);
    const encoded = encodeSecretPayload(data);
    expect(encoded.toString()).toBe('{"v":1,"data":{"A":"dGV4dA==","b.key":"AAEC/w=="}}');
    expect(decodeSecretPayload(encoded)).toEqual(data);
  });

  it('rejects what is not a v1 payload', () => {
    expect(() => decodeSecretPayload(Buffer.from('nope'))).toThrow('not JSON');
    expect(() => decodeSecretPayload(Buffer.from('{"v":2,"data":{}}'))).toThrow('unsupported');
  });
});
