import type { EntityManager, EntityTarget, FindOptionsWhere, ObjectLiteral } from 'typeorm';

/**
 * Read-modify-write of one row under `SELECT … FOR UPDATE`, so a stale copy never overwrites a
 * concurrent change (TypeORM's save() would write back every differing column). null: no row.
 */
export function updateLocked<T extends ObjectLiteral>(
  manager: EntityManager,
  entity: EntityTarget<T>,
  where: FindOptionsWhere<T>,
  mutate: (row: T) => void,
): Promise<T | null> {
  return manager.transaction(async (em) => {
    const row = await em.findOne(entity, { where, lock: { mode: 'pessimistic_write' } });
    if (!row) return null;
    mutate(row);
    return em.save(entity, row);
  });
}
