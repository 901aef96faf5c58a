import type { ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Redis } from 'ioredis';
import { freeLoopbackPort, spawnService, stopChild, stopLeftover, tailOf, waitFor } from './local-process.js';
import { readOrCreateSecretFile } from '../common/secret-file.js';

/**
 * A redis-server on loopback for `make up` and the tests. Password-protected (generated,
 * kept in `dir/password`, 0600) so other local users cannot read queue state; the
 * password goes into a 0600 config file, never onto the command line.
 */
export interface EmbeddedRedisOptions {
  dir: string;
  /** Append-only persistence; off for throwaway test instances. */
  durable: boolean;
  port?: number;
}

export class EmbeddedRedis {
  private child: ChildProcess | undefined;
  private port: number | undefined;
  private password: string | undefined;

  constructor(private readonly options: EmbeddedRedisOptions) {}

  async start(): Promise<string> {
    const { dir } = this.options;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    this.password ??= await readOrCreateSecretFile(path.join(dir, 'password'));
    const pidFile = path.join(dir, 'redis.pid');
    await stopLeftover(pidFile, 'SIGTERM');
    this.port ??= this.options.port ?? (await freeLoopbackPort());
    const conf = path.join(dir, 'redis.conf');
    await writeFile(
      conf,
      [
        'bind 127.0.0.1',
        `port ${this.port}`,
        `requirepass ${this.password}`,
        `dir ${dir}`,
        `pidfile ${pidFile}`,
        `logfile ${path.join(dir, 'redis.log')}`,
        'daemonize no',
        // BullMQ requires that Redis never evicts its keys.
        'maxmemory-policy noeviction',
        this.options.durable ? 'appendonly yes' : 'appendonly no',
        'save ""',
      ].join('\n') + '\n',
      { mode: 0o600 },
    );
    const child = spawnService('redis-server', [conf], {});
    this.child = child;
    child.once('error', () => undefined);
    const stderr = tailOf(child);
    const url = this.url();
    await waitFor('embedded Redis', () => ping(url), { timeoutMs: 20_000, child, describe: stderr });
    return url;
  }

  url(): string {
    if (this.port === undefined || this.password === undefined) throw new Error('embedded Redis was never started');
    return `redis://:${encodeURIComponent(this.password)}@127.0.0.1:${this.port}/0`;
  }

  /** Stops the server; `start()` afterwards brings it back on the same port and password. */
  async stop(): Promise<void> {
    if (this.child) await stopChild(this.child, 'SIGTERM');
    this.child = undefined;
  }
}

async function ping(url: string): Promise<boolean> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } finally {
    client.disconnect();
  }
}
