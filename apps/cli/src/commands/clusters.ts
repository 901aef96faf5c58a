import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { collect, positiveInt } from '../options.js';
import { table } from '../output.js';
import { parsePair } from '../selector.js';

/** `sigil clusters …`: list; the admin's register, relabel and enrollment tokens. */
export function registerClusters(program: Command, ctx: CliContext): void {
  const clusters = program.command('clusters').description('Clusters.');
  clusters
    .command('list')
    .description('List clusters with their state and generations.')
    .option('--labels <k=v,...>', 'only clusters with these labels')
    .action(async (o: { labels?: string }) => {
      const api = ctx.api();
      const page = await api.ok(
        api.client.GET('/api/v1/clusters', { params: { query: { limit: '500', ...(o.labels ? { labels: o.labels } : {}) } } }),
      );
      ctx.print(page.items, () => table(page.items, ['name', 'state', 'labels', 'desiredGeneration', 'appliedGeneration', 'lastSeenAt']));
    });
  clusters
    .command('register <name>')
    .description('Admin: register a cluster.')
    .option('--label <k=v>', 'a label (repeatable)', collect)
    .action(async (name: string, o: { label?: string[] }) => {
      const labels = Object.fromEntries((o.label ?? []).map((l) => parsePair(l, '--label')));
      const api = ctx.api();
      const c = await api.ok(api.client.POST('/api/v1/clusters', { body: { name, labels } }));
      ctx.print(c, () => `cluster ${name} registered\n`);
    });
  clusters
    .command('relabel <name> [labels...]')
    .description('Admin: replace a cluster’s labels (k=v ...); it joins or leaves selector publications.')
    .action(async (name: string, labels: string[]) => {
      const api = ctx.api();
      const c = await api.ok(
        api.client.PATCH('/api/v1/clusters/{cluster}', {
          params: { path: { cluster: name } },
          body: { labels: Object.fromEntries(labels.map((l) => parsePair(l, 'a label'))) },
        }),
      );
      ctx.print(c, () => `cluster ${name} relabelled\n`);
    });
  clusters
    .command('token <name>')
    .description('Admin: a one-time enrollment token for the cluster’s agent (printed once).')
    .option('--ttl <seconds>', 'lifetime', positiveInt)
    .action(async (name: string, o: { ttl?: number }) => {
      const api = ctx.api();
      const t = await api.ok(
        api.client.POST('/api/v1/clusters/{cluster}/enrollment-tokens', {
          params: { path: { cluster: name } },
          body: o.ttl ? { ttlSeconds: o.ttl } : {},
        }),
      );
      ctx.print(t, () => `${t.token}\n`);
    });
}
