#!/usr/bin/env node
import { CommanderError } from 'commander';
import { buildProgram } from './commands.js';
import { CliError, EXIT } from './exit-codes.js';

/** `sigil`: the pipeline and operator CLI. Exit codes are listed in `sigil --help`. */
const program = buildProgram().exitOverride();
for (const c of program.commands) {
  c.exitOverride();
  for (const sub of c.commands) sub.exitOverride();
}

try {
  await program.parseAsync();
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? EXIT.ok : EXIT.usage);
  if (err instanceof CliError) {
    if (err.message) process.stderr.write(`sigil: ${err.message}\n`);
    process.exit(err.exitCode);
  }
  process.stderr.write(`sigil: ${(err as Error).message}\n`);
  process.exit(EXIT.usage);
}
