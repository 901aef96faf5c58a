#!/usr/bin/env node
import { Command, Option } from 'commander';

/** `sigil`: the pipeline and operator CLI. Commands grow with the REST API. */
const EXIT = { ok: 0, unavailable: 3, usage: 2 } as const;

const program = new Command('sigil')
  .description('Sigil command-line interface: configure secrets and publish apps to clusters.')
  .version(process.env.npm_package_version ?? '0.1.0')
  .addOption(new Option('--server <url>', 'control-plane REST URL').env('SIGIL_SERVER').default('http://127.0.0.1:8080'))
  .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
  .exitOverride((err) => process.exit(err.exitCode === 0 ? EXIT.ok : EXIT.usage));

program
  .command('health')
  .description('Show whether the control plane and its dependencies (PostgreSQL, Redis, HSM) are ready.')
  .action(async () => {
    const { server, output } = program.opts<{ server: string; output: 'text' | 'json' }>();
    let status: number;
    let body: { status?: string; failed?: string[] };
    try {
      const res = await fetch(new URL('/readyz', server), { signal: AbortSignal.timeout(5_000) });
      status = res.status;
      body = (await res.json()) as typeof body;
    } catch (err) {
      process.stderr.write(`sigil: cannot reach ${server}: ${(err as Error).message}\n`);
      process.exit(EXIT.unavailable);
    }
    if (output === 'json') process.stdout.write(`${JSON.stringify(body)}\n`);
    else process.stdout.write(status === 200 ? 'ready\n' : `not ready: ${(body.failed ?? []).join(', ')}\n`);
    process.exit(status === 200 ? EXIT.ok : EXIT.unavailable);
  });

await program.parseAsync();
