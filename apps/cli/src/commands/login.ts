import type { Command } from 'commander';
import { Api } from '../api.js';
import { readConfig, writeConfig } from '../config.js';
import type { CliContext } from '../context.js';
import { CliError, EXIT } from '../exit-codes.js';

/** `sigil login`: proves a token works, then stores it with the server as a named context. */
export function registerLogin(program: Command, ctx: CliContext): void {
  program
    .command('login')
    .description(
      'Store a server URL and API token as a named context (file mode 0600). The token is read from stdin unless --token is given.',
    )
    .option('--name <context>', 'context name', 'default')
    .action(async (opts: { name: string }) => {
      const { env } = ctx.io;
      const server = ctx.opts.server ?? env.SIGIL_SERVER;
      if (!server) throw new CliError(EXIT.usage, 'give --server <url>');
      if (!ctx.opts.token && !env.SIGIL_TOKEN && ctx.io.stdin.isTTY) ctx.io.stderr.write('API token, then Ctrl-D: ');
      const token = (ctx.opts.token ?? env.SIGIL_TOKEN ?? (await ctx.readStdin())).trim();
      if (!token) throw new CliError(EXIT.usage, 'no token on stdin');
      const api = new Api(server, token, ctx.io.fetch);
      await api.ok(api.client.GET('/api/v1/projects', { params: { query: { limit: '1' } } })); // proves the token works before storing it
      const cfg = readConfig(env);
      cfg.contexts[opts.name] = { server, token };
      cfg.currentContext = opts.name;
      const file = writeConfig(cfg, env);
      ctx.print({ context: opts.name, server, config: file }, () => `logged in to ${server} as context ${opts.name} (${file})\n`);
    });
}
