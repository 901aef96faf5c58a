import { chmod, copyFile, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { removeAll, writeAtomically } from './atomic-files.js';
import type { InjectionAnswer } from './injection-service.js';

// The injector: what the webhook runs in an injected pod, from the agent's image.
//   init     fetch the app's values once, write the files (and the env file and sigil-exec), exit
//   sidecar  keep the files current: long-poll the agent, rewrite on change, remove on unpublish
// It authenticates with the pod's projected service-account token and trusts only the agent's
// serving certificate (SIGIL_INJECT_CA). It prints reasons, never values.

const { request } = process.getBuiltinModule('node:https');

interface Settings {
  url: string;
  app: string;
  ca: string;
  tokenFile: string;
  filesDir: string;
  envFile: string | undefined;
  execDir: string | undefined;
  execSource: string;
  /** Sidecar: the signal sent to the app's processes after a rotation (shared PID namespace). */
  signal: NodeJS.Signals | undefined;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/**
 * Variables that make the dynamic loader or an interpreter run other code: a secret's keys never
 * set them (whoever can write a secret could otherwise run code in every consuming pod).
 */
const LOADER_HOOK =
  /^(LD_[A-Z_]+|PATH|NODE_OPTIONS|PYTHONPATH|PYTHONSTARTUP|PERL5OPT|PERL5LIB|RUBYOPT|BASH_ENV|ENV|JAVA_TOOL_OPTIONS|_JAVA_OPTIONS)$/;
/** Refusals the agent answers for good (not a network or API-server hiccup). */
const FINAL = new Set([401, 403, 404, 409]);

function settings(): Settings {
  const need = (k: string) => {
    const v = process.env[k];
    if (!v) die(`${k} is not set (the webhook sets it; was this container added by hand?)`);
    return v;
  };
  return {
    url: need('SIGIL_INJECT_URL'),
    app: need('SIGIL_INJECT_APP'),
    ca: need('SIGIL_INJECT_CA'),
    tokenFile: need('SIGIL_INJECT_TOKEN_FILE'),
    filesDir: need('SIGIL_INJECT_FILES_DIR'),
    envFile: process.env.SIGIL_INJECT_ENV_FILE || undefined,
    execDir: process.env.SIGIL_INJECT_EXEC_DIR || undefined,
    execSource: process.env.SIGIL_INJECT_EXEC_SOURCE || '/usr/local/bin/sigil-exec',
    signal: (process.env.SIGIL_INJECT_SIGNAL || undefined) as NodeJS.Signals | undefined,
  };
}

function log(message: string): void {
  process.stderr.write(`sigil-inject: ${message}\n`);
}

function die(message: string): never {
  log(message);
  process.exit(1);
}

type Fetched = { status: 200; answer: InjectionAnswer } | { status: 304 } | { status: number; reason: string; message: string };

/** One GET of the app's values; the token is read afresh (the kubelet rotates it). */
async function fetchValues(s: Settings, known?: string, waitSeconds = 0): Promise<Fetched> {
  const token = (await readFile(s.tokenFile, 'utf8')).trim();
  const url = new URL(`/v1/inject/${s.app}`, s.url);
  if (known) url.searchParams.set('known', known);
  if (waitSeconds) url.searchParams.set('wait', String(waitSeconds));
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: 'GET', ca: s.ca, headers: { authorization: `Bearer ${token}` }, timeout: (waitSeconds + 15) * 1000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          const status = res.statusCode ?? 0;
          try {
            if (status === 304) resolve({ status: 304 });
            else if (status === 200) resolve({ status: 200, answer: JSON.parse(body.toString('utf8')) as InjectionAnswer });
            else {
              const e = JSON.parse(body.toString('utf8')) as { reason?: string; message?: string };
              resolve({ status, reason: e.reason ?? 'unknown', message: e.message ?? '' });
            }
          } catch {
            reject(new Error(`the agent answered ${status} with a body that is not JSON`));
          } finally {
            body.fill(0);
          }
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer from the agent in time')));
    req.on('error', reject);
    req.end();
  });
}

/** The answer as files (secret → key → bytes). */
function filesOf(answer: InjectionAnswer): Map<string, Map<string, Buffer>> {
  return new Map(answer.secrets.map((s) => [s.name, new Map(Object.entries(s.data).map(([k, v]) => [k, Buffer.from(v, 'base64')]))]));
}

function zero(files: Map<string, Map<string, Buffer>>): void {
  for (const keys of files.values()) for (const v of keys.values()) v.fill(0);
}

/** NUL-separated KEY=VALUE entries for sigil-exec; keys that are not variable names are files only. */
async function writeEnvFile(file: string, files: Map<string, Map<string, Buffer>>): Promise<void> {
  const parts: Buffer[] = [];
  const seen = new Map<string, string>();
  for (const [secret, keys] of files)
    for (const [k, v] of keys) {
      if (LOADER_HOOK.test(k)) {
        log(`key ${k} of ${secret} would change how the app's programs load: it is in the files only`);
        continue;
      }
      if (!ENV_NAME.test(k)) {
        log(`key ${k} of ${secret} is not an environment variable name: it is in the files only`);
        continue;
      }
      if (seen.has(k)) {
        log(`key ${k} is in both ${seen.get(k)} and ${secret}: the environment gets ${seen.get(k)}'s`);
        continue;
      }
      if (v.includes(0)) {
        log(`key ${k} of ${secret} holds a NUL byte, which no environment variable can: it is in the files only`);
        continue;
      }
      seen.set(k, secret);
      parts.push(Buffer.from(`${k}=`), v, Buffer.from([0]));
    }
  const payload = Buffer.concat(parts);
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp`);
  try {
    await rm(tmp, { force: true }); // a run cut short left a read-only one
    await writeFile(tmp, payload, { mode: 0o400 });
    await rename(tmp, file);
  } finally {
    payload.fill(0);
  }
}

/** Retries what may pass (the agent starting, the API server busy) for up to `ms`; a refusal ends it. */
async function fetchUntilAnswered(s: Settings, ms: number): Promise<Fetched> {
  const deadline = Date.now() + ms;
  for (let delay = 250; ; delay = Math.min(delay * 2, 5_000)) {
    try {
      const r = await fetchValues(s);
      if (r.status === 200 || FINAL.has(r.status) || Date.now() > deadline) return r;
      log(`the agent answered ${r.status} (${'reason' in r ? r.reason : ''}); retrying`);
    } catch (err) {
      if (Date.now() > deadline) throw err;
      log(`cannot reach the agent at ${s.url}: ${(err as Error).message}; retrying`);
    }
    await sleep(delay);
  }
}

async function init(s: Settings): Promise<void> {
  const started = Date.now();
  const r = await fetchUntilAnswered(s, 120_000).catch((err: unknown) =>
    die(`cannot reach the agent at ${s.url}: ${(err as Error).message}`),
  );
  if (r.status !== 200 || !('answer' in r)) die(`refused (${'reason' in r ? r.reason : r.status}): ${'message' in r ? r.message : ''}`);
  const files = filesOf(r.answer);
  try {
    await writeAtomically(s.filesDir, files);
    if (s.envFile) await writeEnvFile(s.envFile, files);
  } finally {
    zero(files);
  }
  if (s.execDir) {
    // Through a temporary name: a second run of the init container (a sandbox restart keeps the
    // volume) finds the first copy read-only.
    const target = path.join(s.execDir, 'sigil-exec');
    const tmp = path.join(s.execDir, `.sigil-exec.${process.pid}`);
    await copyFile(s.execSource, tmp);
    await chmod(tmp, 0o555);
    await rename(tmp, target);
  }
  log(`wrote ${r.answer.secrets.length} secret(s) of ${s.app} in ${Date.now() - started} ms`);
}

/**
 * Signals every process of the pod that runs as this user except the injector's own (the webhook
 * set shareProcessNamespace; PID 1 is the pod's pause process, another user).
 */
async function signalApp(signal: NodeJS.Signals): Promise<void> {
  const uid = process.getuid?.();
  let sent = 0;
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid || pid === 1) continue;
    try {
      const status = await readFile(`/proc/${pid}/status`, 'utf8');
      if (Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]) !== uid) continue;
      if ((await readFile(`/proc/${pid}/cmdline`, 'utf8')).includes('sigil-inject.cjs')) continue;
      process.kill(pid, signal);
      sent += 1;
    } catch {
      // gone meanwhile, or not ours
    }
  }
  log(`sent ${signal} to ${sent} process(es) of the app`);
}

async function sidecar(s: Settings): Promise<void> {
  let known = '';
  let stopped = false;
  process.once('SIGTERM', () => {
    stopped = true;
    process.exit(0);
  });
  for (let delay = 1_000; !stopped;) {
    let r: Fetched;
    try {
      r = await fetchValues(s, known || undefined, 50);
    } catch (err) {
      log(`cannot reach the agent at ${s.url}: ${(err as Error).message}; the files stay as they are`);
      await sleep(delay);
      delay = Math.min(delay * 2, 30_000);
      continue;
    }
    delay = 1_000;
    if (r.status === 304) continue;
    if (r.status === 200 && 'answer' in r) {
      const files = filesOf(r.answer);
      try {
        await writeAtomically(s.filesDir, files);
        if (s.envFile) await writeEnvFile(s.envFile, files);
      } finally {
        zero(files);
      }
      if (known) {
        log(`updated ${r.answer.secrets.length} secret(s) of ${s.app}`);
        if (s.signal) await signalApp(s.signal);
      }
      known = r.answer.stamp;
      continue;
    }
    const reason = 'reason' in r ? r.reason : String(r.status);
    if (r.status === 404 || r.status === 403) {
      if (known) log(`refused (${reason}): removing the files`);
      await removeAll(s.filesDir);
      if (s.envFile) await rm(s.envFile, { force: true });
      known = '';
    } else log(`the agent answered ${r.status} (${reason}); the files stay as they are`);
    await sleep(5_000);
  }
}

const command = process.argv[2];
if (command === 'init') void init(settings()).catch((err: unknown) => die((err as Error).message));
else if (command === 'sidecar') void sidecar(settings()).catch((err: unknown) => die((err as Error).message));
else die('usage: sigil-inject init|sidecar (run by the Sigil webhook in injected pods)');
