import { CommanderError } from 'commander';
import type { CliIo } from './context.js';
import { CliError, EXIT } from './exit-codes.js';
import { buildProgram } from './program.js';

/** Runs one `sigil` invocation (`argv` as process.argv) and returns its exit code; errors go to stderr in one line. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  try {
    await buildProgram(io).parseAsync(argv);
    return EXIT.ok;
  } catch (err) {
    // Commander has printed its own message (or the help / version, exit code 0).
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    if (err instanceof CliError) {
      if (err.message) io.stderr.write(`sigil: ${err.message}\n`);
      return err.exitCode;
    }
    io.stderr.write(`sigil: ${(err as Error).message}\n`);
    return EXIT.usage;
  }
}
