import { DataSource } from 'typeorm';
import { migrations } from './migrations/index.js';
import { entities } from './entities.js';

/**
 * The one TypeORM DataSource. Schema changes go through migrations only (run at start,
 * serialised across replicas by TypeORM's migration lock); `synchronize` is never used.
 */
export function createDataSource(url: string): DataSource {
  return new DataSource({
    type: 'postgres',
    url,
    entities,
    migrations,
    migrationsTableName: 'schema_migrations',
    synchronize: false,
    logging: false,
    extra: {
      max: 20,
      // Fail fast while PostgreSQL is away, so /readyz reports it within seconds.
      connectionTimeoutMillis: 2_000,
      idleTimeoutMillis: 30_000,
      application_name: 'sigil-control-plane',
    },
  });
}

/** Connects and applies pending migrations. */
export async function openDatabase(url: string): Promise<DataSource> {
  const ds = createDataSource(url);
  await ds.initialize();
  try {
    await ds.runMigrations({ transaction: 'each' });
  } catch (err) {
    await ds.destroy();
    throw err;
  }
  return ds;
}
