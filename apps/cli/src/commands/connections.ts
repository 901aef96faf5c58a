import { readFileSync } from 'node:fs';
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { Schemas } from '../api.js';
import type { CliContext } from '../context.js';
import { CliError, EXIT } from '../exit-codes.js';
import { table } from '../output.js';

type TlsMode = Schemas['CreateConnectionDto']['tlsMode'] & string;
const TLS_MODES: TlsMode[] = ['verify-full', 'require', 'disable'];
const TLS_HELP = 'verify-full (default: CA and host name checked), require (encrypted, nothing checked), disable (no TLS)';

function port(v: string): number {
  if (!/^\d{1,5}$/.test(v) || Number(v) < 1 || Number(v) > 65535) throw new InvalidArgumentError('must be a port between 1 and 65535');
  return Number(v);
}

/**
 * The admin password: from stdin with --admin-password-stdin (one trailing newline dropped), or
 * typed at a prompt without echo when stdin is a terminal. Never a flag: flags end up in shell
 * history and in `ps`.
 */
async function readAdminPassword(ctx: CliContext, fromStdin: boolean): Promise<string> {
  const stdin = ctx.io.stdin as CliContext['io']['stdin'] & { setRawMode?: (raw: boolean) => unknown };
  let password: string;
  if (fromStdin) {
    password = (await ctx.readStdin()).replace(/\r?\n$/, '');
  } else if (stdin.isTTY && typeof stdin.setRawMode === 'function') {
    ctx.io.stderr.write('Admin password: ');
    stdin.setRawMode(true);
    try {
      password = await readLine(stdin);
    } finally {
      stdin.setRawMode(false);
      ctx.io.stderr.write('\n');
    }
  } else {
    throw new CliError(EXIT.usage, 'give the admin password on stdin with --admin-password-stdin (or run in a terminal to be prompted)');
  }
  if (password === '') throw new CliError(EXIT.usage, 'the admin password is empty');
  return password;
}

/** One line typed in raw mode (no echo): Enter ends it, Backspace edits, Ctrl-C or Ctrl-D abort. */
async function readLine(stdin: AsyncIterable<Buffer | string>): Promise<string> {
  let line = '';
  for await (const chunk of stdin) {
    for (const ch of typeof chunk === 'string' ? chunk : chunk.toString('utf8')) {
      if (ch === '\r' || ch === '\n') return line;
      if (ch === '\u0003' || ch === '\u0004') throw new CliError(EXIT.usage, 'aborted');
      line = ch === '\u007f' || ch === '\b' ? line.slice(0, -1) : line + ch;
    }
  }
  return line;
}

/** `sigil connections …`: the databases dynamic secrets create roles in. */
export function registerConnections(program: Command, ctx: CliContext): void {
  const connections = program
    .command('connections')
    .description('Database connections of a project (dynamic secrets create their roles through them). Passwords are never shown.');
  connections
    .command('list <project>')
    .description('List connections.')
    .action(async (project: string) => {
      const api = ctx.api();
      const page = await api.ok(
        api.client.GET('/api/v1/projects/{project}/connections', { params: { path: { project }, query: { limit: '500' } } }),
      );
      ctx.print(page.items, () =>
        table(page.items, ['name', 'engine', 'host', 'port', 'database', 'username', 'tlsMode', 'rolePrefix', 'adminPasswordSetAt']),
      );
    });
  connections
    .command('get <project> <name>')
    .description('Show a connection (never its password: adminPasswordSetAt says when it was written).')
    .action(async (project: string, name: string) => {
      const api = ctx.api();
      const c = await api.ok(
        api.client.GET('/api/v1/projects/{project}/connections/{connection}', { params: { path: { project, connection: name } } }),
      );
      ctx.print(c, () =>
        table([c], ['name', 'engine', 'host', 'port', 'database', 'username', 'tlsMode', 'rolePrefix', 'adminPasswordSetAt']),
      );
    });
  connections
    .command('create <project> <name>')
    .description('Register a PostgreSQL connection. The admin password is read from stdin or a prompt, sealed by the HSM, never shown.')
    .requiredOption('--host <host>', 'host name or IP address of the database server')
    .option('--port <port>', 'port (default 5432)', port)
    .requiredOption('--database <database>', 'the database roles are granted in')
    .requiredOption('--username <role>', 'the admin role Sigil connects as (CREATEROLE; see docs/dynamic-secrets.md)')
    .option('--admin-password-stdin', 'read the admin password from stdin (else a prompt, in a terminal)')
    .addOption(new Option('--tls-mode <mode>', TLS_HELP).choices(TLS_MODES))
    .option('--ca-file <path>', 'PEM CA certificate(s) that verify-full trusts for this server')
    .option('--role-prefix <prefix>', 'prefix of every role created here (default sigil_<8 hex>_)')
    .action(
      async (
        project: string,
        name: string,
        o: {
          host: string;
          port?: number;
          database: string;
          username: string;
          adminPasswordStdin?: boolean;
          tlsMode?: TlsMode;
          caFile?: string;
          rolePrefix?: string;
        },
      ) => {
        const caCertificate = o.caFile === undefined ? undefined : readCa(o.caFile);
        const adminPassword = await readAdminPassword(ctx, o.adminPasswordStdin === true);
        const api = ctx.api();
        const c = await api.ok(
          api.client.POST('/api/v1/projects/{project}/connections', {
            params: { path: { project } },
            body: {
              name,
              host: o.host,
              database: o.database,
              username: o.username,
              adminPassword,
              ...(o.port !== undefined ? { port: o.port } : {}),
              ...(o.tlsMode ? { tlsMode: o.tlsMode } : {}),
              ...(caCertificate !== undefined ? { caCertificate } : {}),
              ...(o.rolePrefix ? { rolePrefix: o.rolePrefix } : {}),
            },
          }),
        );
        ctx.print(
          c,
          () => `connection ${c.name}: ${c.username}@${c.host}:${c.port}/${c.database} (${c.tlsMode}), roles ${c.rolePrefix}*\n`,
        );
      },
    );
  connections
    .command('update <project> <name>')
    .description('Change settings, or replace the admin password with --admin-password-stdin.')
    .option('--host <host>', 'host name or IP address')
    .option('--port <port>', 'port', port)
    .option('--database <database>', 'database')
    .option('--username <role>', 'admin role')
    .option('--admin-password-stdin', 'replace the admin password with the one on stdin')
    .addOption(new Option('--tls-mode <mode>', TLS_HELP).choices(TLS_MODES))
    .option('--ca-file <path>', 'PEM CA certificate(s) for verify-full (an empty file removes it)')
    .action(
      async (
        project: string,
        name: string,
        o: {
          host?: string;
          port?: number;
          database?: string;
          username?: string;
          adminPasswordStdin?: boolean;
          tlsMode?: TlsMode;
          caFile?: string;
        },
      ) => {
        const caCertificate = o.caFile === undefined ? undefined : readCa(o.caFile);
        const adminPassword = o.adminPasswordStdin ? await readAdminPassword(ctx, true) : undefined;
        const body = {
          ...(o.host !== undefined ? { host: o.host } : {}),
          ...(o.port !== undefined ? { port: o.port } : {}),
          ...(o.database !== undefined ? { database: o.database } : {}),
          ...(o.username !== undefined ? { username: o.username } : {}),
          ...(o.tlsMode !== undefined ? { tlsMode: o.tlsMode } : {}),
          ...(caCertificate !== undefined ? { caCertificate } : {}),
          ...(adminPassword !== undefined ? { adminPassword } : {}),
        };
        if (Object.keys(body).length === 0) throw new CliError(EXIT.usage, 'nothing to change: give at least one option');
        const api = ctx.api();
        const c = await api.ok(
          api.client.PATCH('/api/v1/projects/{project}/connections/{connection}', {
            params: { path: { project, connection: name } },
            body,
          }),
        );
        ctx.print(c, () => `connection ${c.name}: updated (version ${c.version})\n`);
      },
    );
  connections
    .command('verify <project> <name>')
    .description(
      'Connect with the admin credential: server version, and whether Sigil can issue through it (CREATEROLE, not a superuser). Exit 3 when the database fails.',
    )
    .action(async (project: string, name: string) => {
      const api = ctx.api();
      const v = await api.ok(
        api.client.POST('/api/v1/projects/{project}/connections/{connection}/verify', { params: { path: { project, connection: name } } }),
      );
      ctx.print(
        v,
        () => `connection ${name}: PostgreSQL ${v.serverVersion}, ${v.canCreateRoles ? 'can create roles' : 'CANNOT create roles'}\n`,
      );
      if (v.superuser)
        throw new CliError(
          EXIT.failed,
          `the admin role of ${name} is a superuser; Sigil issues only through a role with CREATEROLE that is not a superuser`,
        );
      if (!v.canCreateRoles) throw new CliError(EXIT.failed, `the admin role of ${name} may not create roles (it needs CREATEROLE)`);
    });
  connections
    .command('delete <project> <name>')
    .description('Delete a connection and its sealed admin password (refused while a dynamic secret uses it).')
    .action(async (project: string, name: string) => {
      const api = ctx.api();
      await api.ok(
        api.client.DELETE('/api/v1/projects/{project}/connections/{connection}', { params: { path: { project, connection: name } } }),
      );
      ctx.print({ deleted: name }, () => `connection ${name}: deleted\n`);
    });
}

function readCa(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    throw new CliError(EXIT.usage, `cannot read ${file}`);
  }
}
