import { DataSource, type DataSourceOptions } from 'typeorm';
import { isTransientDependencyError } from '../common/transient-errors.js';
import { migrations } from './migrations/index.js';

/**
 * The one TypeORM DataSource. Schema changes go through migrations only (run at start,
 * serialised across replicas by an advisory lock (migrate() below)); `synchronize` is never used.
 */
/** Default connections per replica (SIGIL_DB_POOL_SIZE). */
export const DEFAULT_POOL_SIZE = 20;

/** `entities`: what the composition root maps (apps/control-plane/src/entities.ts); none for migrations alone. */
export function createDataSource(url: string, poolSize = DEFAULT_POOL_SIZE, entities: DataSourceOptions['entities'] = []): DataSource {
  return new DataSource({
    type: 'postgres',
    url,
    entities,
    migrations,
    migrationsTableName: 'schema_migrations',
    synchronize: false,
    logging: false,
    extra: {
      max: poolSize,
      // Fail fast while PostgreSQL is away, so /readyz reports it within seconds. Bursts of agent
      // work wait in a WorkQueue in front of the pool (work-queue.ts), not here.
      connectionTimeoutMillis: 2_000,
      idleTimeoutMillis: 30_000,
      application_name: 'sigil-control-plane',
    },
  });
}

/** How long start-up keeps trying a PostgreSQL that is busy or briefly away before giving up. */
const STARTUP_RETRY_MS = 30_000;

/**
 * Connects and applies pending migrations. A busy or briefly absent PostgreSQL (a connect
 * timeout, a refused or dropped connection) is retried with backoff for up to 30 s rather than
 * failing the start: replicas and a database often start together. Anything else fails at once.
 */
export async function openDatabase(
  url: string,
  poolSize = DEFAULT_POOL_SIZE,
  entities: DataSourceOptions['entities'] = [],
): Promise<DataSource> {
  const ds = createDataSource(url, poolSize, entities);
  const until = Date.now() + STARTUP_RETRY_MS;
  for (let delay = 250; ; delay = Math.min(delay * 2, 4_000)) {
    try {
      if (!ds.isInitialized) await ds.initialize();
      await migrate(ds);
      return ds;
    } catch (err) {
      if (!isTransientDependencyError(err) || Date.now() + delay > until) {
        if (ds.isInitialized) await ds.destroy();
        throw err;
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

/** Held while migrating, so replicas that start together on a fresh database take turns. */
const MIGRATION_LOCK = 0x5161_0010;

/**
 * Applies pending migrations under a session advisory lock: TypeORM takes none, and two
 * replicas starting on an empty database both try to create its migrations table (one fails
 * with a duplicate pg_type row). The lock goes with the session if the process dies. Each
 * migration commits on its own, so a retry resumes where a failure stopped.
 */
async function migrate(ds: DataSource): Promise<void> {
  const lock = ds.createQueryRunner();
  await lock.connect();
  try {
    await lock.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    try {
      await ds.runMigrations({ transaction: 'each' });
    } finally {
      await lock.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
    }
  } finally {
    await lock.release();
  }
}
