import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { table } from '../output.js';
import { parseSelector, type LabelSelector } from '../selector.js';

const seg = (project: string) => ({ path: { project } });

/** `sigil projects …`: list, create, and the admin's cluster selector and namespaces. */
export function registerProjects(program: Command, ctx: CliContext): void {
  const projects = program.command('projects').description('Projects.');
  projects
    .command('list')
    .description('List projects.')
    .action(async () => {
      const api = ctx.api();
      const page = await api.ok(api.client.GET('/api/v1/projects', { params: { query: { limit: '500' } } }));
      ctx.print(page.items, () => table(page.items, ['name', 'description', 'createdAt']));
    });
  projects
    .command('create <name>')
    .description('Create a project.')
    .option('--description <text>', 'description', '')
    .action(async (name: string, o: { description: string }) => {
      const api = ctx.api();
      const p = await api.ok(api.client.POST('/api/v1/projects', { body: { name, description: o.description } }));
      ctx.print(p, () => `project ${name} created\n`);
    });
  projects
    .command('allow-clusters <project>')
    .description('Admin: which clusters the project may publish to (a label selector; "" allows all).')
    .requiredOption('--selector <selector>', 'e.g. tier=store,region in (eu-west,eu-north)', parseSelector)
    .action(async (project: string, o: { selector: LabelSelector }) => {
      const api = ctx.api();
      await api.ok(
        api.client.PUT('/api/v1/projects/{project}/cluster-selector', { params: seg(project), body: { selector: { ...o.selector } } }),
      );
      ctx.print(
        { project, selector: o.selector },
        () => `project ${project} may publish to clusters matching ${JSON.stringify(o.selector)}\n`,
      );
    });
  projects
    .command('namespaces <project> [namespaces...]')
    .description('Admin: set the Kubernetes namespaces the project holds (all of them); without namespaces, list them.')
    .action(async (project: string, namespaces: string[]) => {
      const api = ctx.api();
      const r = await api.ok(
        namespaces.length
          ? api.client.PUT('/api/v1/projects/{project}/namespaces', { params: seg(project), body: { namespaces } })
          : api.client.GET('/api/v1/projects/{project}/namespaces', { params: seg(project) }),
      );
      ctx.print(r, () => `project ${project} holds namespaces: ${r.namespaces.join(', ') || '(none)'}\n`);
    });
}
