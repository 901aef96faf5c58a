import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { CliError, EXIT } from './exit-codes.js';

/** ~/.config/sigil/config.json (or $SIGIL_CONFIG), mode 0600: named contexts of server + token. */
export interface CliConfigFile {
  currentContext?: string;
  contexts: Record<string, { server: string; token: string }>;
}

type Env = NodeJS.ProcessEnv;

export const configPath = (env: Env) =>
  env.SIGIL_CONFIG ?? path.join(env.XDG_CONFIG_HOME ?? path.join(homedir(), '.config'), 'sigil', 'config.json');

export function readConfig(env: Env): CliConfigFile {
  const file = configPath(env);
  if (!existsSync(file)) return { contexts: {} };
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as CliConfigFile;
    return { currentContext: parsed.currentContext, contexts: parsed.contexts ?? {} };
  } catch {
    throw new CliError(EXIT.usage, `${file} is not valid JSON; fix or delete it`);
  }
}

export function writeConfig(cfg: CliConfigFile, env: Env): string {
  const file = configPath(env);
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(cfg, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
  return file;
}

/** Flags beat the environment, which beats the config file's (current or named) context. */
export function resolveTarget(
  opts: { server?: string; token?: string; context?: string },
  env: Env,
): { server: string; token: string | undefined } {
  const cfg = readConfig(env);
  const name = opts.context ?? env.SIGIL_CONTEXT ?? cfg.currentContext;
  if (opts.context && !cfg.contexts[opts.context])
    throw new CliError(EXIT.usage, `no context ${JSON.stringify(opts.context)} in ${configPath(env)}`);
  const ctx = name ? cfg.contexts[name] : undefined;
  return {
    server: opts.server ?? env.SIGIL_SERVER ?? ctx?.server ?? 'http://127.0.0.1:8080',
    token: opts.token ?? env.SIGIL_TOKEN ?? ctx?.token,
  };
}
