import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { inTransaction, managerOf } from '../database/transaction.js';

const TICKET_KEY_LOCK = 0x5161_0006;

/** The lock under which the first replica to start creates the TLS session-ticket key in the HSM (one key, not two). */
@Injectable()
export class SessionTicketRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  withCreationLock<T>(fn: () => Promise<T>): Promise<T> {
    return inTransaction(this.ds, async (tx) => {
      await managerOf(this.ds, tx).query('SELECT pg_advisory_xact_lock($1)', [TICKET_KEY_LOCK]);
      return fn();
    });
  }
}
