import { InvalidArgumentError, Option, type Command } from 'commander';
import type { CliContext } from '../context.js';
import { CliError, EXIT } from '../exit-codes.js';
import type { components } from '@sigil/rest-api';
import { table } from '../output.js';

type Consumer = components['schemas']['ConsumerDto'];
type DeliveryMode = components['schemas']['CreateAppDto']['deliveryMode'];
const MODES: DeliveryMode[] = ['env', 'volume', 'inject'];
const MODE_HELP = 'env (envFrom), volume (in-memory files) or inject (no Secret: the agent hands the values to annotated pods)';

/** `--consumer shop/checkout` (or `shop/*`: any service account of the namespace); the server checks the names. */
function consumer(v: string): Consumer {
  const m = /^([^/\s]+)\/([^/\s]+)$/.exec(v);
  if (!m) throw new InvalidArgumentError('must be <namespace>/<serviceAccount> (serviceAccount * for any of the namespace)');
  return { namespace: m[1]!, serviceAccount: m[2]! };
}
const consumers = (v: string, prev: Consumer[] = []) => [...prev, consumer(v)];
const CONSUMER_HELP = 'inject mode: pods that may receive the values, <namespace>/<serviceAccount> or <namespace>/* (repeatable)';

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
      ctx.print(page.items, () => table(page.items, ['name', 'namespace', 'deliveryMode', 'secretType', 'consumers']));
    });
  apps
    .command('create <project> <name>')
    .description('Create an app: where its Secrets go and how pods consume them.')
    .requiredOption('--namespace <namespace>', 'Kubernetes namespace of its Secrets')
    .addOption(new Option('--delivery-mode <mode>', MODE_HELP).choices(MODES).default('env'))
    // The flag's first name, kept for scripts that use it.
    .addOption(new Option('--mode <mode>').choices(MODES).hideHelp())
    .option('--consumer <namespace/serviceAccount>', CONSUMER_HELP, consumers)
    .option('--mount-path <path>', 'for volume mode')
    .action(
      async (
        project: string,
        name: string,
        o: { namespace: string; deliveryMode: DeliveryMode; mode?: DeliveryMode; consumer?: Consumer[]; mountPath?: string },
      ) => {
        const api = ctx.api();
        const a = await api.ok(
          api.client.POST('/api/v1/projects/{project}/apps', {
            params: { path: { project } },
            body: {
              name,
              namespace: o.namespace,
              deliveryMode: o.mode ?? o.deliveryMode,
              ...(o.consumer ? { consumers: o.consumer } : {}),
              ...(o.mountPath ? { mountPath: o.mountPath } : {}),
            },
          }),
        );
        ctx.print(a, () => `app ${project}/${name} created\n`);
      },
    );
  apps
    .command('update <project> <name>')
    .description('Change an app; clusters it is published to receive the change. Only the options given change.')
    .option('--namespace <namespace>', 'move its Secrets to another namespace')
    .addOption(new Option('--delivery-mode <mode>', MODE_HELP).choices(MODES))
    .option('--consumer <namespace/serviceAccount>', `${CONSUMER_HELP}; replaces the list`, consumers)
    .option('--mount-path <path>', 'for volume mode')
    .action(
      async (
        project: string,
        name: string,
        o: { namespace?: string; deliveryMode?: DeliveryMode; consumer?: Consumer[]; mountPath?: string },
      ) => {
        const body = {
          ...(o.namespace ? { namespace: o.namespace } : {}),
          ...(o.deliveryMode ? { deliveryMode: o.deliveryMode } : {}),
          ...(o.consumer ? { consumers: o.consumer } : {}),
          ...(o.mountPath ? { mountPath: o.mountPath } : {}),
        };
        if (Object.keys(body).length === 0)
          throw new CliError(EXIT.usage, 'nothing to change: give --namespace, --delivery-mode, --consumer or --mount-path');
        const api = ctx.api();
        const a = await api.ok(
          api.client.PATCH('/api/v1/projects/{project}/apps/{app}', { params: { path: { project, app: name } }, body }),
        );
        ctx.print(a, () => `app ${project}/${name} updated\n`);
      },
    );
  apps
    .command('consumption <project> <app>')
    .description("Inject apps: which pods received the app's secrets, per cluster, secret, namespace and service account (no values).")
    .action(async (project: string, app: string) => {
      const api = ctx.api();
      const items: Array<components['schemas']['ConsumptionView']> = [];
      let after: string | undefined;
      do {
        const page = await api.ok(
          api.client.GET('/api/v1/projects/{project}/apps/{app}/consumption', {
            params: { path: { project, app }, query: { limit: '500', ...(after ? { after } : {}) } },
          }),
        );
        items.push(...page.items);
        after = page.next ?? undefined;
      } while (after);
      ctx.print(items, () => table(items, ['cluster', 'secret', 'version', 'namespace', 'serviceAccount', 'grants', 'lastPod', 'lastAt']));
    });
}
