import type { MigrationInterface, QueryRunner } from 'typeorm';

/** The cluster CA's certificates (its key lives only in the HSM). */
export class ClusterCa1763800000003 implements MigrationInterface {
  name = 'ClusterCa1763800000003';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE certificate_authorities (
        version          integer PRIMARY KEY CHECK (version > 0),
        certificate_der  bytea NOT NULL,
        created_at       timestamptz NOT NULL DEFAULT now()
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE certificate_authorities');
  }
}
