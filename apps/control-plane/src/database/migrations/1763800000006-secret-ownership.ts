import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * One owner per Kubernetes Secret (docs/decisions/008): namespaces are claimed by exactly one
 * project (an admin grants them), an app may only target a namespace its project holds, and a
 * (namespace, Secret name) belongs to one secret of one app in the whole fleet. PostgreSQL
 * enforces all three, so no race between two requests can make two owners.
 *
 * Existing data: each app's namespace is granted to its project. A namespace used by two
 * projects, or a (namespace, name) used by two secrets, has two owners already; the migration
 * refuses to guess which one is right and stops with the list, for an operator to resolve.
 */
export class SecretOwnership1763800000006 implements MigrationInterface {
  name = 'SecretOwnership1763800000006';

  async up(q: QueryRunner): Promise<void> {
    const sharedNamespaces = (await q.query(
      `SELECT namespace FROM apps GROUP BY namespace HAVING count(DISTINCT project_id) > 1 ORDER BY namespace LIMIT 20`,
    )) as Array<{ namespace: string }>;
    const sharedTargets = (await q.query(
      `SELECT a.namespace || '/' || s.name AS target FROM secrets s JOIN apps a ON a.id = s.app_id
        GROUP BY a.namespace, s.name HAVING count(*) > 1 ORDER BY 1 LIMIT 20`,
    )) as Array<{ target: string }>;
    // The API never grants kube-* namespaces; an app already there must move first.
    const systemNamespaces = (await q.query(
      `SELECT DISTINCT namespace FROM apps WHERE namespace LIKE 'kube-%' ORDER BY namespace LIMIT 20`,
    )) as Array<{ namespace: string }>;
    sharedNamespaces.push(...systemNamespaces);
    if (sharedNamespaces.length || sharedTargets.length) {
      throw new Error(
        'secret ownership: these namespaces are used by several projects (or are kube-* system namespaces), or these Secrets by several apps; ' +
          'give each one owner (move or delete apps/secrets) and start again: ' +
          [
            ...sharedNamespaces.map((r: { namespace: string }) => r.namespace),
            ...sharedTargets.map((r: { target: string }) => r.target),
          ].join(', '),
      );
    }
    await q.query(`
      CREATE TABLE project_namespaces (
        namespace   text PRIMARY KEY,
        project_id  uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
        granted_at  timestamptz NOT NULL DEFAULT now(),
        granted_by  text NOT NULL,
        CONSTRAINT project_namespaces_project_namespace UNIQUE (project_id, namespace)
      )`);
    await q.query(
      `INSERT INTO project_namespaces (namespace, project_id, granted_by)
       SELECT DISTINCT namespace, project_id, 'migration' FROM apps`,
    );
    // An app targets only a namespace its project holds; revoking a namespace in use fails.
    await q.query(`ALTER TABLE apps ADD CONSTRAINT apps_namespace_claimed
      FOREIGN KEY (project_id, namespace) REFERENCES project_namespaces (project_id, namespace) ON DELETE RESTRICT`);
    // Secrets carry their app's namespace (kept equal by the cascade) so that one unique index
    // gives each (namespace, name) a single owner; moving an app onto a taken name fails.
    await q.query('ALTER TABLE apps ADD CONSTRAINT apps_id_namespace UNIQUE (id, namespace)');
    await q.query('ALTER TABLE secrets ADD COLUMN namespace text');
    await q.query('UPDATE secrets s SET namespace = a.namespace FROM apps a WHERE a.id = s.app_id');
    await q.query('ALTER TABLE secrets ALTER COLUMN namespace SET NOT NULL');
    await q.query(`ALTER TABLE secrets ADD CONSTRAINT secrets_app_namespace
      FOREIGN KEY (app_id, namespace) REFERENCES apps (id, namespace) ON UPDATE CASCADE ON DELETE CASCADE`);
    await q.query('ALTER TABLE secrets ADD CONSTRAINT secrets_target_unique UNIQUE (namespace, name)');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE secrets DROP CONSTRAINT secrets_target_unique');
    await q.query('ALTER TABLE secrets DROP CONSTRAINT secrets_app_namespace');
    await q.query('ALTER TABLE secrets DROP COLUMN namespace');
    await q.query('ALTER TABLE apps DROP CONSTRAINT apps_id_namespace');
    await q.query('ALTER TABLE apps DROP CONSTRAINT apps_namespace_claimed');
    await q.query('DROP TABLE project_namespaces');
  }
}
