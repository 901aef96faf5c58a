import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request } from 'node:https';
import { BlockList, isIP } from 'node:net';

const MAX_BYTES = 512 * 1024;

/**
 * Addresses a fetch triggered by an unauthenticated caller must not reach unless an admin allows
 * it: loopback, private, link-local (cloud metadata), carrier-grade NAT, unspecified, multicast
 * and reserved ranges. IPv4-mapped IPv6 addresses match their IPv4 rules (BlockList does that).
 */
const NON_PUBLIC = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const)
  NON_PUBLIC.addSubnet(net, bits, 'ipv4');
for (const [net, bits] of [
  ['::', 128],
  ['::1', 128],
  ['64:ff9b::', 96], // NAT64: reaches IPv4 space, private parts included
  ['100::', 64],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const)
  NON_PUBLIC.addSubnet(net, bits, 'ipv6');

export function isPublicAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  return !NON_PUBLIC.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/** Refused before connecting: the host is or resolves to a non-public address. */
export class AddressNotAllowed extends Error {
  constructor(host: string) {
    super(`${host} is not a public address`);
    this.name = 'AddressNotAllowed';
  }
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * dns.lookup that fails when any resolved address is non-public. It runs as the socket's own
 * lookup, so the address checked is the address connected to (no re-resolution in between).
 */
function publicOnlyLookup(hostname: string, options: { all?: boolean; family?: number }, callback: LookupCallback): void {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, []);
    if (addresses.length === 0 || addresses.some((a) => !isPublicAddress(a.address))) return callback(new AddressNotAllowed(hostname), []);
    if (options.all) return callback(null, addresses);
    callback(null, addresses[0]!.address, addresses[0]!.family);
  });
}

/**
 * GET over https with an optional CA bundle, as a fetch Response (what jose's remote JWKS
 * expects). Node's global fetch cannot take a per-request CA, and issuers of private clusters
 * are signed by the cluster's own CA. Redirects are not followed; bodies are capped. Unless
 * `allowPrivateAddresses`, the host (an IP literal or every address its name resolves to) must
 * be public.
 */
export function httpsGet(
  url: string,
  opts: { ca?: string; signal?: AbortSignal; timeoutMs?: number; allowPrivateAddresses?: boolean } = {},
): Promise<Response> {
  return new Promise((resolve, reject) => {
    const host = new URL(url).hostname.replace(/^\[(.*)\]$/, '$1');
    if (!opts.allowPrivateAddresses && isIP(host) !== 0 && !isPublicAddress(host)) return reject(new AddressNotAllowed(host));
    const req = request(
      url,
      {
        method: 'GET',
        headers: { accept: 'application/json, application/jwk-set+json' },
        ...(opts.ca ? { ca: opts.ca } : {}),
        ...(opts.allowPrivateAddresses ? {} : { lookup: publicOnlyLookup as never }),
        timeout: opts.timeoutMs ?? 5_000,
        signal: opts.signal,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_BYTES) req.destroy(new Error(`response from ${url} is larger than ${MAX_BYTES} bytes`));
          else chunks.push(c);
        });
        res.on('end', () =>
          resolve(
            new Response(Buffer.concat(chunks), {
              status: res.statusCode ?? 502,
              headers: { 'content-type': String(res.headers['content-type'] ?? 'application/octet-stream') },
            }),
          ),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} within the timeout`)));
    req.on('error', reject);
    req.end();
  });
}
