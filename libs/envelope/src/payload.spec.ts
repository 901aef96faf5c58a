import { describe, expect, it } from '@jest/globals';
import { decodeSecretPayload, encodeSecretPayload, encodedSecretPayloadLength } from './payload.js';

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

  it('knows the encoded length without encoding', () => {
    for (const data of [
      new Map<string, Buffer>(),
      new Map([['k', Buffer.alloc(0)]]),
      new Map([
        ['a', Buffer.alloc(1)],
        ['b.c', Buffer.alloc(2)],
        ['D-e_f', Buffer.alloc(3)],
      ]),
      new Map([['tls.crt', Buffer.alloc(1024 * 1024 + 1, 7)]]),
    ]) {
      expect(encodedSecretPayloadLength(data)).toBe(encodeSecretPayload(data).length);
    }
  });
});
