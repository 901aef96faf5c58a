#!/usr/bin/env node
import { runCli } from './cli.js';

/** `sigil`: the pipeline and operator CLI. Exit codes are listed in `sigil --help`. */
process.exit(
  await runCli(process.argv, {
    env: process.env,
    fetch: globalThis.fetch,
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
  }),
);
