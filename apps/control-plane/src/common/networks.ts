import { BlockList, isIP } from 'node:net';

/** CIDR lists (10.0.0.0/8, fd00::/8, or a single address) as node:net BlockLists. */

export const ipFamily = (address: string): 'ipv4' | 'ipv6' => (isIP(address) === 6 ? 'ipv6' : 'ipv4');

/** Throws on the first entry that is not an address or a CIDR. */
export function blockList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const c of cidrs) {
    const [address, bits, extra] = c.split('/');
    const family = isIP(address ?? '');
    if (family === 0 || extra !== undefined) throw new Error(`${JSON.stringify(c)} is not an address or CIDR (e.g. 10.0.0.0/8, fd00::/8)`);
    if (bits === undefined) list.addAddress(address!, ipFamily(address!));
    else {
      const prefix = /^\d{1,3}$/.test(bits) ? Number(bits) : NaN;
      if (!(prefix >= 0 && prefix <= (family === 6 ? 128 : 32)))
        throw new Error(`${JSON.stringify(c)} has a prefix length outside 0-${family === 6 ? 128 : 32}`);
      list.addSubnet(address!, prefix, ipFamily(address!));
    }
  }
  return list;
}

/** The first problem with a CIDR list, for a configuration error; undefined when it is good. */
export function networksProblem(cidrs: readonly string[]): string | undefined {
  try {
    blockList(cidrs);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}
