import type { DataSource } from 'typeorm';

/**
 * Undoes migrations, newest first, until `name` (a migration class's `name`) is undone: a
 * migration test exercises its own `down` whatever was added after it.
 */
export async function undoMigrationsThrough(ds: DataSource, name: string): Promise<void> {
  const applied = async () =>
    (await ds.query<Array<{ name: string }>>('SELECT name FROM schema_migrations WHERE name = $1', [name])).length > 0;
  if (!(await applied())) throw new Error(`migration ${name} is not applied`);
  while (await applied()) await ds.undoLastMigration({ transaction: 'all' });
}
