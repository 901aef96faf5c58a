import { Option, type Command } from 'commander';
import type { CliContext } from '../context.js';
import { table } from '../output.js';

/** `sigil apps …`: the apps of a project. */
export function registerApps(program: Command, ctx: CliContext): void {
  const apps = program.command('apps').description('Apps of a project.');
  apps
    .command('list <project>')
    .description('List apps.')
    .action(async (project: string) => {
      const api = ctx.api();
      const page = await api.ok(
        api.client.GET('/api/v1/projects/{project}/apps', { params: { path: { project }, query: { limit: '500' } } }),
      );
      ctx.print(page.items, () => table(page.items, ['name', 'namespace', 'deliveryMode', 'secretType']));
    });
  apps
    .command('create <project> <name>')
    .description('Create an app: where its Secrets go and how pods consume them.')
    .requiredOption('--namespace <namespace>', 'Kubernetes namespace of its Secrets')
    .addOption(new Option('--mode <mode>', 'env (envFrom) or volume (in-memory files)').choices(['env', 'volume']).default('env'))
    .option('--mount-path <path>', 'for volume mode')
    .action(async (project: string, name: string, o: { namespace: string; mode: 'env' | 'volume'; mountPath?: string }) => {
      const api = ctx.api();
      const a = await api.ok(
        api.client.POST('/api/v1/projects/{project}/apps', {
          params: { path: { project } },
          body: { name, namespace: o.namespace, deliveryMode: o.mode, ...(o.mountPath ? { mountPath: o.mountPath } : {}) },
        }),
      );
      ctx.print(a, () => `app ${project}/${name} created\n`);
    });
}
