import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import type { Api, Schemas } from '../api.js';
import type { CliContext } from '../context.js';
import { CliError, EXIT } from '../exit-codes.js';
import { positiveInt } from '../options.js';
import { table } from '../output.js';

type Rotation = Schemas['RootKeyRotationView'];

/** The server reports progress per batch of 500 keys; polling faster shows nothing new. */
const POLL_MS = 500;

const progressLine = (r: Rotation) => `re-wrapped ${r.done} of ${r.total} stored keys under root key version ${r.toVersion}`;

/** With --wait: polls the rotation until it completes (0), fails (1) or --timeout passes (5). */
async function waitForRotation(ctx: CliContext, api: Api, r: Rotation, timeoutS: number, started: number): Promise<Rotation> {
  const deadline = started + timeoutS * 1000;
  let last = '';
  while (r.state === 'running' && Date.now() < deadline) {
    const line = progressLine(r);
    if (line !== last) ctx.progress(line);
    last = line;
    await sleep(Math.min(POLL_MS, Math.max(0, deadline - Date.now())));
    r = await api.ok(api.client.GET('/api/v1/root-keys/rotations/{rotation}', { params: { path: { rotation: r.id } } }));
  }
  return r;
}

/** `sigil root-keys …`: the admin's view and rotation of the HSM root keys (docs/crypto.md). */
export function registerRootKeys(program: Command, ctx: CliContext): void {
  const rootKeys = program.command('root-keys').description('Admin: the HSM root keys that wrap every stored key.');
  rootKeys
    .command('list')
    .description('List root key versions, their state and how many stored keys each still wraps.')
    .action(async () => {
      const api = ctx.api();
      const { items } = await api.ok(api.client.GET('/api/v1/root-keys'));
      ctx.print(items, () => table(items, ['version', 'state', 'references', 'createdAt', 'retiredAt', 'destroyedAt']));
    });
  rootKeys
    .command('rotate')
    .description(
      'Generate a new root key version in the HSM and make it active; every stored key is then re-wrapped under it in the background.',
    )
    .option('--wait', 'wait until every stored key is re-wrapped, showing progress')
    .option('--timeout <seconds>', 'give up waiting after this long (exit 5)', positiveInt, 300)
    .action(async (o: { wait?: boolean; timeout: number }) => {
      const started = Date.now();
      const api = ctx.api();
      let r = await api.ok(api.client.POST('/api/v1/root-keys/rotations'));
      if (o.wait) r = await waitForRotation(ctx, api, r, o.timeout, started);
      ctx.print(
        r,
        () => `root key version ${r.toVersion} active (was ${r.fromVersion}); rotation ${r.id} ${r.state}: ${progressLine(r)}\n`,
      );
      if (r.state === 'failed') throw new CliError(EXIT.failed, `root key rotation ${r.id} failed`);
      if (o.wait && r.state === 'running')
        throw new CliError(EXIT.timeout, `timed out after ${o.timeout} s; the rotation goes on in the background (${progressLine(r)})`);
    });
  rootKeys
    .command('destroy')
    .argument('<version>', 'a retired root key version', positiveInt)
    .description('Destroy a retired root key in the HSM once nothing is wrapped under it (irreversible).')
    .action(async (v: number) => {
      const api = ctx.api();
      await api.ok(api.client.DELETE('/api/v1/root-keys/{version}', { params: { path: { version: String(v) } } }));
      ctx.print({ version: v, state: 'destroyed' }, () => `root key version ${v} destroyed in the HSM\n`);
    });
}
