import net from 'node:net';

/**
 * A TCP relay on loopback in front of a server, which a test can take down and bring back: while
 * down it drops the connections it holds and resets every new one, as a server that crashed or
 * a network that failed would look to the client. It moves no data itself beyond piping.
 */
export class TcpProxy {
  private up = true;
  private readonly open = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static async start(targetHost: string, targetPort: number): Promise<TcpProxy> {
    const ref: { proxy?: TcpProxy } = {};
    const server = net.createServer((client) => {
      client.on('error', () => undefined);
      const proxy = ref.proxy;
      if (!proxy?.up) {
        client.resetAndDestroy();
        return;
      }
      const upstream = net.connect(targetPort, targetHost);
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
      for (const s of [client, upstream]) {
        proxy.open.add(s);
        s.on('close', () => proxy.open.delete(s));
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    ref.proxy = new TcpProxy(server, (server.address() as net.AddressInfo).port);
    return ref.proxy;
  }

  /** The server is gone: open connections are cut, new ones refused, until `restore`. */
  takeDown(): void {
    this.up = false;
    for (const s of this.open) s.destroy();
  }

  restore(): void {
    this.up = true;
  }

  async close(): Promise<void> {
    this.takeDown();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
