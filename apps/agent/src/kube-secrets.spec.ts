import { describe, expect, it } from '@jest/globals';
import { holdsExactly } from './kube-secrets.js';

describe('holdsExactly (data compared, not the checksum annotation)', () => {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
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
