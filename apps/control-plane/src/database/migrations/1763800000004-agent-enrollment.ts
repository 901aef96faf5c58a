import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * What agent enrollment and the gRPC API need on a cluster: its Kubernetes identity (issuer,
 * JWKS, allowed service account), the fingerprint of the agent's TLS key that its certificates
 * must carry, and the desired/applied generations the Watch stream talks about.
 */
export class AgentEnrollment1763800000004 implements MigrationInterface {
  name = 'AgentEnrollment1763800000004';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE clusters
        ADD COLUMN kubernetes_identity jsonb NULL,
        ADD COLUMN agent_key_sha256    bytea NULL CHECK (octet_length(agent_key_sha256) = 32),
        ADD COLUMN desired_generation  bigint NOT NULL DEFAULT 0 CHECK (desired_generation >= 0),
        ADD COLUMN applied_generation  bigint NOT NULL DEFAULT 0 CHECK (applied_generation >= 0)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE clusters
        DROP COLUMN kubernetes_identity, DROP COLUMN agent_key_sha256,
        DROP COLUMN desired_generation, DROP COLUMN applied_generation`);
  }
}
