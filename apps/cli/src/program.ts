import { Command, Option } from 'commander';
import { registerApps } from './commands/apps.js';
import { registerClusters } from './commands/clusters.js';
import { registerConnections } from './commands/connections.js';
import { registerHealth } from './commands/health.js';
import { registerLeases } from './commands/leases.js';
import { registerLogin } from './commands/login.js';
import { registerProjects } from './commands/projects.js';
import { registerPublications } from './commands/publications.js';
import { registerRootKeys } from './commands/root-keys.js';
import { registerSecrets } from './commands/secrets.js';
import { CliContext, type CliIo } from './context.js';

const EXIT_CODES_HELP = `
Exit codes:
  0  success (with --wait: every cluster converged, or the rotation completed)
  1  with --wait: at least one cluster failed (named on stderr), or the rotation failed;
     connections verify: the admin role may not create roles
  2  bad input: flags, arguments, or the server refused the request
  3  the control plane is unreachable, not ready, or answered 5xx or 429 (retry later);
     connections verify: the database could not be reached or refused (502 connection_failed)
  4  authentication or permission refused
  5  with --wait: --timeout elapsed before every cluster converged (or the rotation finished)`;

/**
 * Builds the `sigil` command tree on `io`. Commander's exits become CommanderErrors and its
 * output goes to `io` (subcommands inherit both), so `runCli` alone decides the exit code.
 */
export function buildProgram(io: CliIo): Command {
  const program = new Command('sigil')
    .description('Sigil command-line interface: configure secrets and publish apps to clusters.')
    .version('0.1.0')
    .exitOverride()
    .configureOutput({ writeOut: (s) => void io.stdout.write(s), writeErr: (s) => void io.stderr.write(s) })
    .addOption(new Option('--server <url>', 'control-plane REST URL (env SIGIL_SERVER; else the context)'))
    .addOption(new Option('--token <token>', 'API token (env SIGIL_TOKEN; else the context). Prefer `sigil login`.'))
    .addOption(new Option('--context <name>', 'a context from the config file (env SIGIL_CONTEXT)'))
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
    .addHelpText('after', EXIT_CODES_HELP);
  const ctx = new CliContext(program, io);
  registerLogin(program, ctx);
  registerHealth(program, ctx);
  registerProjects(program, ctx);
  registerApps(program, ctx);
  registerSecrets(program, ctx);
  registerConnections(program, ctx);
  registerLeases(program, ctx);
  registerClusters(program, ctx);
  registerPublications(program, ctx);
  registerRootKeys(program, ctx);
  return program;
}
