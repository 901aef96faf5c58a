import { Option, type Command } from 'commander';
import type { Schemas } from '../api.js';
import type { CliContext } from '../context.js';
import { CliError, EXIT } from '../exit-codes.js';
import { table } from '../output.js';

type Lease = Schemas['LeaseView'];
type LeaseState = Lease['state'];
// A Record, so a state added to the server's enum fails tsc here until it is listed.
const STATE_SET: Record<LeaseState, true> = { intent: true, active: true, superseded: true, revoking: true, revoked: true, failed: true };
const STATES = Object.keys(STATE_SET) as LeaseState[];

interface ListOptions {
  project?: string;
  app?: string;
  cluster?: string;
  secret?: string;
  state?: LeaseState;
}

/** `sigil leases …`: the per-cluster credentials of dynamic secrets (never a value). */
export function registerLeases(program: Command, ctx: CliContext): void {
  const leases = program
    .command('leases')
    .description("Dynamic secrets' leases: the credential each cluster holds, its role, lifetime and state. Passwords are never shown.");
  leases
    .command('list')
    .description(
      "List leases, newest first, every page: an app's with --project and --app (--cluster filters), or a cluster's with --cluster alone.",
    )
    .option('--project <project>', 'the project of --app')
    .option('--app <app>', 'the app whose leases to list (with --project)')
    .option('--cluster <cluster>', "only this cluster's; alone, every lease on the cluster that the token may see")
    .option('--secret <secret>', "only this dynamic secret's")
    .addOption(new Option('--state <state>', 'only leases in this state').choices(STATES))
    .action(async (o: ListOptions) => {
      if ((o.project === undefined) !== (o.app === undefined))
        throw new CliError(EXIT.usage, 'give --project and --app together (an app’s leases), or --cluster alone (a cluster’s)');
      if (o.project === undefined && o.cluster === undefined)
        throw new CliError(EXIT.usage, 'give --project and --app (an app’s leases), or --cluster (a cluster’s)');
      const api = ctx.api();
      const filters = { ...(o.secret !== undefined ? { secret: o.secret } : {}), ...(o.state !== undefined ? { state: o.state } : {}) };
      const items: Lease[] = [];
      let after: string | undefined;
      do {
        const query = { limit: '500', ...filters, ...(after ? { after } : {}) };
        const page = await api.ok(
          o.project !== undefined && o.app !== undefined
            ? api.client.GET('/api/v1/projects/{project}/apps/{app}/leases', {
                params: {
                  path: { project: o.project, app: o.app },
                  query: { ...query, ...(o.cluster !== undefined ? { cluster: o.cluster } : {}) },
                },
              })
            : api.client.GET('/api/v1/clusters/{cluster}/leases', { params: { path: { cluster: o.cluster! }, query } }),
        );
        items.push(...page.items);
        after = page.next ?? undefined;
      } while (after);
      const where = o.project !== undefined ? ['cluster', 'secret'] : ['project', 'app', 'secret'];
      ctx.print(items, () =>
        table(items, ['id', ...where, 'serial', 'state', 'role', 'issuedAt', 'expiresAt', 'revokedAt', 'revokeReason', 'lastError']),
      );
    });
  leases
    .command('revoke')
    .argument('<lease-id>', 'the lease’s id (the ID column of `sigil leases list`)')
    .description(
      'Revoke an active or superseded lease now: its role is dropped within seconds, and a cluster that should still hold the secret gets a fresh credential. An intent or a failed lease holds no credential: exit 2 (lease_not_revocable).',
    )
    .requiredOption('--project <project>', 'the project of --app')
    .requiredOption('--app <app>', 'the app the lease belongs to')
    .action(async (lease: string, o: { project: string; app: string }) => {
      const api = ctx.api();
      const l = await api.ok(
        api.client.POST('/api/v1/projects/{project}/apps/{app}/leases/{lease}/revoke', {
          params: { path: { project: o.project, app: o.app, lease } },
        }),
      );
      ctx.print(l, () => `lease ${l.id} (${l.secret ?? '-'} on ${l.cluster ?? '-'}, serial ${l.serial}, role ${l.role}): ${l.state}\n`);
    });
}
