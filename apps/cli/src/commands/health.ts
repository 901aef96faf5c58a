import type { Command } from 'commander';
import { Api } from '../api.js';
import type { CliContext } from '../context.js';
import { CliError, EXIT } from '../exit-codes.js';

const READY_TIMEOUT_MS = 5_000;

/** `sigil health`: /readyz, which needs no token. */
export function registerHealth(program: Command, ctx: CliContext): void {
  program
    .command('health')
    .description('Whether the control plane and its dependencies (PostgreSQL, Redis, HSM) are ready.')
    .action(async () => {
      const api = new Api(ctx.target().server, undefined, ctx.io.fetch, READY_TIMEOUT_MS);
      const { data, error, response } = await api.reach(api.client.GET('/readyz'));
      const body = (response.ok ? data : error) as { failed?: string[] } | undefined;
      ctx.print(body, () => (response.ok ? 'ready\n' : `not ready: ${(body?.failed ?? []).join(', ')}\n`));
      if (!response.ok) throw new CliError(EXIT.unavailable, '');
    });
}
