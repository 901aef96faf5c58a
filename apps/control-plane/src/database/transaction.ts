import { Inject, Injectable } from '@nestjs/common';
import { DataSource, type EntityManager } from 'typeorm';

declare const opaque: unique symbol;

/**
 * An open database transaction, as services see it: a handle they pass from one repository call
 * to the next so the calls commit together, and can do nothing else with (no queries, no ORM).
 * Only repositories and `database/` turn it back into TypeORM's EntityManager (managerOf).
 */
export interface Tx {
  readonly [opaque]: 'Tx';
}

/** For repositories: the EntityManager of `tx`, or the pool's (each statement its own transaction) without one. */
export function managerOf(ds: DataSource, tx: Tx | undefined): EntityManager {
  return tx === undefined ? ds.manager : (tx as unknown as EntityManager);
}

/** For repositories: wraps an EntityManager TypeORM opened (e.g. inside `ds.transaction`) as a Tx. */
export function asTx(em: EntityManager): Tx {
  return em as unknown as Tx;
}

/** Runs `fn` in a new transaction on `ds`: committed when it resolves, rolled back when it throws. */
export function inTransaction<T>(ds: DataSource, fn: (tx: Tx) => Promise<T>): Promise<T> {
  return ds.transaction((em) => fn(asTx(em)));
}

/**
 * A transaction for work that spans repositories (of one feature or several): `run(fn)` commits
 * everything `fn` did through the Tx it was given, or nothing. Repositories that need a lock
 * taken first (advisory locks) offer their own `…Transaction` method instead.
 */
@Injectable()
export class UnitOfWork {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  run<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return inTransaction(this.ds, fn);
  }
}
