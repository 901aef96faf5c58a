import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { managerOf, type Tx } from '../database/transaction.js';

/** Which namespaces each project holds (table project_namespaces, owned by this module). */
@Injectable()
export class ProjectNamespacesRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  async list(projectId: string): Promise<string[]> {
    const rows = await this.ds.query<Array<{ namespace: string }>>(
      'SELECT namespace FROM project_namespaces WHERE project_id = $1 ORDER BY namespace',
      [projectId],
    );
    return rows.map((r) => r.namespace);
  }

  async holds(projectId: string, namespace: string): Promise<boolean> {
    const rows = await this.ds.query<unknown[]>('SELECT 1 FROM project_namespaces WHERE project_id = $1 AND namespace = $2', [
      projectId,
      namespace,
    ]);
    return rows.length > 0;
  }

  /**
   * Which of `namespaces` the project does not hold, with the project's set locked against a
   * concurrent `replace` until `tx` ends (FOR SHARE against its FOR UPDATE): a check made here
   * still holds when the caller's writes commit.
   */
  async missingLocked(projectId: string, namespaces: string[], tx: Tx): Promise<string[]> {
    const em = managerOf(this.ds, tx);
    await em.query('SELECT 1 FROM projects WHERE id = $1 FOR SHARE', [projectId]);
    const held = await em.query<Array<{ namespace: string }>>(
      'SELECT namespace FROM project_namespaces WHERE project_id = $1 AND namespace = ANY($2::text[])',
      [projectId, namespaces],
    );
    const found = new Set(held.map((r) => r.namespace));
    return namespaces.filter((n) => !found.has(n));
  }

  /**
   * Makes `namespaces` exactly the project's set, in one transaction. `check` sees, before
   * anything is written, which of them another project holds and which dropped ones the
   * project's apps still use, and may throw; the constraints catch whatever races past it.
   */
  replace(
    projectId: string,
    namespaces: string[],
    grantedBy: string,
    check: (heldElsewhere: string[], stillUsed: string[]) => void,
  ): Promise<void> {
    return this.ds.transaction(async (em) => {
      // Two replacements of one project's set run one after the other, never mixed.
      await em.query('SELECT 1 FROM projects WHERE id = $1 FOR UPDATE', [projectId]);
      const elsewhere = await em.query<Array<{ namespace: string }>>(
        'SELECT namespace FROM project_namespaces WHERE namespace = ANY($1::text[]) AND project_id <> $2 ORDER BY namespace',
        [namespaces, projectId],
      );
      // Used: an app's own namespace, or one of its consumers' (an inject app's pods there).
      const used = await em.query<Array<{ namespace: string }>>(
        `SELECT DISTINCT ns AS namespace FROM (
           SELECT namespace AS ns FROM apps WHERE project_id = $1
           UNION SELECT e.consumer->>'namespace' FROM apps, jsonb_array_elements(apps.consumers) AS e(consumer) WHERE apps.project_id = $1
         ) used WHERE NOT (ns = ANY($2::text[])) ORDER BY 1`,
        [projectId, namespaces],
      );
      check(
        elsewhere.map((r) => r.namespace),
        used.map((r) => r.namespace),
      );
      await em.query('DELETE FROM project_namespaces WHERE project_id = $1 AND NOT (namespace = ANY($2::text[]))', [projectId, namespaces]);
      await em.query(
        `INSERT INTO project_namespaces (namespace, project_id, granted_by)
         SELECT n, $2, $3 FROM unnest($1::text[]) AS n ON CONFLICT (project_id, namespace) DO NOTHING`,
        [namespaces, projectId, grantedBy],
      );
    });
  }
}
