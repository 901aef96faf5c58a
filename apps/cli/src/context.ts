import type { Command } from 'commander';
import { Api } from './api.js';
import { resolveTarget } from './config.js';
import { CliError, EXIT } from './exit-codes.js';

/** The process the CLI runs in; tests pass their own (an in-memory stdout, a loopback server). */
export interface CliIo {
  readonly env: NodeJS.ProcessEnv;
  readonly fetch: typeof fetch;
  readonly stdin: AsyncIterable<Buffer | string> & { isTTY?: boolean };
  readonly stdout: { write(text: string): unknown };
  readonly stderr: { write(text: string): unknown };
}

export interface GlobalOpts {
  server?: string;
  token?: string;
  context?: string;
  output: 'text' | 'json';
}

/** What every command uses: the global options, the API, output in the chosen format. */
export class CliContext {
  constructor(
    private readonly program: Command,
    readonly io: CliIo,
  ) {}

  get opts(): GlobalOpts {
    return this.program.opts<GlobalOpts>();
  }

  target(): { server: string; token: string | undefined } {
    return resolveTarget(this.opts, this.io.env);
  }

  /** The API with the resolved token; refused (exit 4) before any request when there is none. */
  api(): Api {
    const t = this.target();
    if (!t.token) throw new CliError(EXIT.auth, 'no API token: run `sigil login`, or set SIGIL_TOKEN or --token');
    return new Api(t.server, t.token, this.io.fetch);
  }

  /** `data` as JSON with `-o json`, else the text. */
  print(data: unknown, text: () => string): void {
    this.io.stdout.write(this.opts.output === 'json' ? `${JSON.stringify(data, null, 2)}\n` : text());
  }

  /** A progress line on stderr, for people only (nothing with `-o json`). */
  progress(line: string): void {
    if (this.opts.output === 'text') this.io.stderr.write(`${line}\n`);
  }

  async readStdin(): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const c of this.io.stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : c);
    return Buffer.concat(chunks).toString('utf8');
  }
}
