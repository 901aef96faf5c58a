import { lookup } from 'node:dns/promises';
import { isIP, SocketAddress, type BlockList } from 'node:net';
import { blockList, ipFamily } from '../../common/networks.js';
import { CredentialEngineError } from './credential-engine.js';

/**
 * Where the control plane may dial a registered connection (docs/dynamic-secrets.md, "Where
 * Sigil connects"). A project's connections:write holder chooses the host, and the control plane
 * logs in from inside the installation's network, so without a policy the host could be Sigil's
 * own PostgreSQL or Redis or a cloud metadata endpoint. The name is resolved here, every address
 * it resolves to is checked, and the engine dials the checked address (never the name again), so
 * a DNS answer that changes between check and connect cannot slip past.
 */

export interface Endpoint {
  host: string;
  port: number;
}

/**
 * One of Sigil's own services. Redis is refused outright. Sigil's PostgreSQL server may hold
 * the target databases too (a database of its own next to Sigil's), so there only Sigil's own
 * database and Sigil's own database user are refused: roles are server-wide, but a role made
 * through another admin in another database gets no grant in Sigil's.
 */
export interface OwnService extends Endpoint {
  database?: string;
  username?: string;
}

/** Who a connection logs in as, for the own-service rule. */
export interface DialLogin {
  database: string;
  username: string;
}

export interface DialPolicyOptions {
  /** CIDRs no connection may reach. */
  denied: readonly string[];
  /** When non-empty, the only CIDRs a connection may reach (after `denied`). */
  allowed: readonly string[];
  /** Sigil's own services (its PostgreSQL and Redis): refused whatever the lists say. */
  own: readonly OwnService[];
  /** Tests only: a resolver that does not need the system's. */
  resolve?: (host: string) => Promise<string[]>;
}

export interface DialPolicy {
  /** The address to dial for host:port, or a CredentialEngineError (`host_denied`, or `unreachable` when the name does not resolve). */
  addressFor(host: string, port: number, login: DialLogin): Promise<string>;
}

/** Every address allowed: unit tests of engines that need no network policy. */
export const OPEN_DIAL_POLICY: DialPolicy = { addressFor: (host) => Promise.resolve(host) };

/** An own service's address; `address` undefined: its name does not resolve now, so its port is refused on any address (fail closed). */
type OwnAddress = { address: string | undefined; port: number; database?: string; username?: string };

/** Sigil's own addresses are resolved again after this long (a Service or a managed endpoint can move). */
const OWN_TTL_MS = 60_000;

/**
 * Refused whatever the configuration says (SIGIL_CONNECTION_DENIED_NETWORKS adds to it):
 * link-local (cloud metadata at 169.254.169.254), unspecified (0.0.0.0 and :: reach the local
 * host), multicast, the other clouds' metadata addresses, and NAT64 (an IPv4 address inside IPv6
 * that the lists below would not see as IPv4).
 */
export const ALWAYS_DENIED_NETWORKS: readonly string[] = [
  '0.0.0.0/8',
  '169.254.0.0/16',
  '100.100.100.200/32',
  '224.0.0.0/4',
  '::/128',
  'fe80::/10',
  'fd00:ec2::254/128',
  'ff00::/8',
  '64:ff9b::/96',
  '64:ff9b:1::/48',
];

// IPv4 first: the engine dials one address (the checked one), and services listen on IPv4 more often than on both.
const systemResolve = async (host: string): Promise<string[]> =>
  (await lookup(host, { all: true, order: 'ipv4first' })).map((a) => a.address);

export class NetworkDialPolicy implements DialPolicy {
  private readonly denied: BlockList;
  private readonly allowed: BlockList | undefined;
  private readonly resolve: (host: string) => Promise<string[]>;
  private ownAddresses: { at: number; addresses: Promise<OwnAddress[]> } | undefined;

  constructor(private readonly options: DialPolicyOptions) {
    this.denied = blockList([...ALWAYS_DENIED_NETWORKS, ...options.denied]);
    this.allowed = options.allowed.length > 0 ? blockList(options.allowed) : undefined;
    this.resolve = options.resolve ?? systemResolve;
  }

  async addressFor(host: string, port: number, login: DialLogin): Promise<string> {
    const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
    let addresses: string[];
    try {
      addresses = isIP(bare) !== 0 ? [bare] : await this.resolve(bare);
    } catch {
      throw new CredentialEngineError('unreachable', `${host} does not resolve`);
    }
    if (addresses.length === 0) throw new CredentialEngineError('unreachable', `${host} does not resolve`);
    // One spelling per address (::ffff:a60:7 is ::ffff:10.96.0.7, FD00:10:0::5 is fd00:10::5), so comparisons hold.
    addresses = addresses.map(canonical);
    const own = await this.own();
    // Every address, not just the first: the resolver's order is not the attacker's to rely on, nor ours.
    for (const address of addresses) {
      const why = this.refusal(address, port, login, own);
      if (why) throw new CredentialEngineError('host_denied', `${host}:${port} (${address}) ${why}`);
    }
    return addresses[0]!;
  }

  private refusal(address: string, port: number, login: DialLogin, own: OwnAddress[]): string | undefined {
    const family = ipFamily(address);
    const mapped = unmapped(address);
    // One message for every own-service case: which service, database or user is not told.
    for (const o of own.filter((o) => o.port === port && (o.address === undefined || sameHost(o.address, mapped))))
      if (o.database === undefined || o.database === login.database || o.username === login.username)
        return "is one of Sigil's own services (its Redis, or its own database or database user)";
    if (this.denied.check(address, family) || (mapped !== address && this.denied.check(mapped, 'ipv4')))
      return 'is in a network connections may not reach (SIGIL_CONNECTION_DENIED_NETWORKS)';
    if (this.allowed && !this.allowed.check(address, family) && !(mapped !== address && this.allowed.check(mapped, 'ipv4')))
      return 'is outside the networks connections may reach (SIGIL_CONNECTION_ALLOWED_NETWORKS)';
    return undefined;
  }

  /** Sigil's own endpoints, resolved again every OWN_TTL_MS; one that does not resolve refuses its port on any address. */
  private own(): Promise<OwnAddress[]> {
    const now = Date.now();
    if (this.ownAddresses && now - this.ownAddresses.at < OWN_TTL_MS) return this.ownAddresses.addresses;
    let failed = false;
    const addresses = Promise.all(
      this.options.own.map(async (e): Promise<OwnAddress[]> => {
        const bare = e.host.startsWith('[') && e.host.endsWith(']') ? e.host.slice(1, -1) : e.host;
        try {
          const found = isIP(bare) !== 0 ? [bare] : await this.resolve(bare);
          return found.map((a) => ({ ...e, address: unmapped(canonical(a)) }));
        } catch {
          failed = true; // not cached: the next dial asks again
          return [{ ...e, address: undefined }];
        }
      }),
    ).then((all) => all.flat());
    this.ownAddresses = { at: now, addresses };
    void addresses.then(() => {
      if (failed) this.ownAddresses = undefined;
    });
    return addresses;
  }
}

/**
 * Sigil's own service at a postgres:// or redis:// URL (default ports when none is given); for
 * PostgreSQL with its database and user. Undefined for a Unix socket, which TCP cannot reach.
 */
export function ownService(url: string): OwnService | undefined {
  try {
    const u = new URL(url);
    const redis = u.protocol.startsWith('redis');
    const host = u.searchParams.get('host') ?? u.hostname;
    if (host === '' || host.startsWith('/')) return undefined;
    const port = u.port === '' ? (redis ? 6379 : 5432) : Number(u.port);
    if (redis) return { host, port };
    // As pg reads it: ?user= and ?port= win over the URL's parts, and no database means the user's.
    const username = u.searchParams.get('user') ?? decodeURIComponent(u.username);
    const database = decodeURIComponent(u.pathname.slice(1)) || username;
    return { host, port: Number(u.searchParams.get('port') ?? port), database, username };
  } catch {
    return undefined;
  }
}

/** The address as Node spells it (lowercase, shortest form; IPv4-mapped with its IPv4 part dotted). */
function canonical(address: string): string {
  try {
    return new SocketAddress({ address, family: ipFamily(address) }).address;
  } catch {
    return address;
  }
}

/** ::ffff:10.0.0.1 is 10.0.0.1. */
function unmapped(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m ? m[1]! : address;
}

// 0.0.0.0 and :: reach the local host too.
const LOOPBACK = blockList(['127.0.0.0/8', '::1/128', '0.0.0.0/8', '::/128']);
const isLoopback = (a: string) => LOOPBACK.check(a, ipFamily(a));

/** Any loopback address reaches a service listening on loopback (127.0.0.1, ::1, localhost), so they count as one host. */
function sameHost(a: string, b: string): boolean {
  return a === b || (isLoopback(a) && isLoopback(b));
}
