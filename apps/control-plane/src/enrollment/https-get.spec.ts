import { describe, expect, it } from '@jest/globals';
import { isPublicAddress } from './https-get.js';

describe('isPublicAddress', () => {
  it.each([
    '127.0.0.1',
    '127.8.9.10',
    '10.1.2.3',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254', // cloud metadata
    '100.64.0.1',
    '0.0.0.0',
    '224.0.0.1',
    '255.255.255.255',
    '::',
    '::1',
    '::ffff:127.0.0.1',
    '::ffff:a9fe:a9fe', // 169.254.169.254, IPv4-mapped
    'fd00::1',
    'fe80::1',
    'ff02::1',
    '64:ff9b::a00:1',
    'not-an-address',
  ])('%s is not public', (a) => expect(isPublicAddress(a)).toBe(false));

  it.each(['8.8.8.8', '1.1.1.1', '172.32.0.1', '192.169.0.1', '2001:4860:4860::8888', '::ffff:8.8.8.8'])('%s is public', (a) =>
    expect(isPublicAddress(a)).toBe(true),
  );
});
