import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { PROBLEM, type Api, type Schemas } from '../api.js';
import type { CliContext } from '../context.js';
import { CliError, EXIT } from '../exit-codes.js';
import { collect, positiveInt } from '../options.js';
import { table } from '../output.js';
import { parsePair } from '../selector.js';

interface SetOptions {
  fromLiteral?: string[];
  fromFile?: string[];
  stdin?: string;
  type?: string;
}

/** The values of `secrets set`, base64-encoded, from flags, files and stdin. */
async function readValues(ctx: CliContext, o: SetOptions): Promise<Record<string, string>> {
  const binaryData: Record<string, string> = {};
  for (const raw of o.fromLiteral ?? []) {
    const [k, v] = parsePair(raw, '--from-literal');
    binaryData[k] = Buffer.from(v, 'utf8').toString('base64');
  }
  for (const raw of o.fromFile ?? []) {
    const [k, file] = parsePair(raw, '--from-file');
    try {
      binaryData[k] = readFileSync(file).toString('base64');
    } catch {
      throw new CliError(EXIT.usage, `cannot read ${file}`);
    }
  }
  if (o.stdin) binaryData[o.stdin] = Buffer.from(await ctx.readStdin()).toString('base64');
  if (Object.keys(binaryData).length === 0) throw new CliError(EXIT.usage, 'give values with --from-literal, --from-file or --stdin');
  return binaryData;
}

/** A new version of the secret, or the secret itself when the server says it does not exist yet. */
async function writeSecret(
  api: Api,
  at: { project: string; app: string },
  name: string,
  binaryData: Record<string, string>,
  type: string | undefined,
): Promise<{ currentVersion?: number }> {
  try {
    return await api.ok(
      api.client.PUT('/api/v1/projects/{project}/apps/{app}/secrets/{secret}', {
        params: { path: { ...at, secret: name } },
        body: { binaryData },
      }),
    );
  } catch (err) {
    if (!(err instanceof CliError && err.problemCode === PROBLEM.secretNotFound)) throw err;
    return api.ok(
      api.client.POST('/api/v1/projects/{project}/apps/{app}/secrets', {
        params: { path: at },
        // The server checks the type; the CLI passes on whatever was given.
        body: { name, binaryData, ...(type ? { type: type as Schemas['CreateSecretDto']['type'] } : {}) },
      }),
    );
  }
}

type GeneratedKey = Schemas['GeneratedKeyDto'];
const KINDS = ['password', 'hex', 'bytes-base64'] as const;

/** `KEY:KIND:LENGTH[:ALPHABET]` (the alphabet may itself contain ':'). */
export function parseGenerate(raw: string): GeneratedKey {
  const [key, kind, length, ...rest] = raw.split(':');
  if (!key || !kind || !length || !/^\d+$/.test(length))
    throw new CliError(EXIT.usage, `--generate ${JSON.stringify(raw)}: expected KEY:KIND:LENGTH[:ALPHABET], e.g. PASSWORD:password:32`);
  if (!(KINDS as readonly string[]).includes(kind))
    throw new CliError(EXIT.usage, `--generate ${JSON.stringify(raw)}: KIND must be one of ${KINDS.join(', ')}`);
  const alphabet = rest.length > 0 ? rest.join(':') : undefined;
  return { key, kind: kind as GeneratedKey['kind'], length: Number(length), ...(alphabet !== undefined ? { alphabet } : {}) };
}

/** `30d`, `30` (days) → 30. */
export function parseDays(raw: string): number {
  const m = /^(\d+)d?$/.exec(raw.trim());
  if (!m || Number(m[1]) < 1) throw new CliError(EXIT.usage, `${JSON.stringify(raw)}: expected a number of days, e.g. 30d`);
  return Number(m[1]);
}

const rotationLine = (s: { rotateEveryDays?: number | null; nextRotationAt?: string | null }) =>
  s.rotateEveryDays ? `rotates every ${s.rotateEveryDays} days, next at ${s.nextRotationAt ?? '?'}` : 'no automatic rotation';

/** `sigil secrets …`: write-only secrets of an app, their versions and rollback. */
export function registerSecrets(program: Command, ctx: CliContext): void {
  const secrets = program.command('secrets').description('Write-only secrets of an app.');
  secrets
    .command('list <project> <app>')
    .description('List secrets (names, keys, versions; never values).')
    .action(async (project: string, app: string) => {
      const api = ctx.api();
      const page = await api.ok(
        api.client.GET('/api/v1/projects/{project}/apps/{app}/secrets', { params: { path: { project, app }, query: { limit: '500' } } }),
      );
      ctx.print(page.items, () => table(page.items, ['name', 'type', 'currentVersion', 'latestVersion', 'keys']));
    });
  secrets
    .command('set <project> <app> <name>')
    .description('Create the secret or write a new version of it. Values are never echoed.')
    .option('--from-literal <KEY=VALUE>', 'a value (repeatable; visible in shell history — prefer the others)', collect)
    .option('--from-file <KEY=PATH>', 'a value read from a file (repeatable; binary-safe)', collect)
    .option('--stdin <KEY>', 'one value read from stdin')
    .option('--type <type>', 'Kubernetes Secret type (new secrets only)')
    .action(async (project: string, app: string, name: string, o: SetOptions) => {
      const binaryData = await readValues(ctx, o);
      const result = await writeSecret(ctx.api(), { project, app }, name, binaryData, o.type);
      ctx.print(
        { secret: name, version: result.currentVersion },
        () => `secret ${name}: version ${result.currentVersion ?? '?'} written (${Object.keys(binaryData).length} keys)\n`,
      );
    });
  secrets
    .command('create <project> <app> <name>')
    .description(
      'Create a generated secret: values from the HSM random generator, sealed at once, never shown. e.g. --generate PASSWORD:password:32 --generate API_KEY:hex:32 --rotate-every 30d',
    )
    .requiredOption(
      '--generate <KEY:KIND:LENGTH[:ALPHABET]>',
      'a generated key (repeatable); KIND password (LENGTH characters), hex or bytes-base64 (LENGTH random bytes)',
      collect,
    )
    .option('--rotate-every <days>', 'rotate automatically every N days (30d or 30)')
    .option('--type <type>', 'Kubernetes Secret type')
    .action(async (project: string, app: string, name: string, o: { generate: string[]; rotateEvery?: string; type?: string }) => {
      const keys = o.generate.map(parseGenerate);
      const rotateEveryDays = o.rotateEvery !== undefined ? parseDays(o.rotateEvery) : undefined;
      const api = ctx.api();
      const s = await api.ok(
        api.client.POST('/api/v1/projects/{project}/apps/{app}/secrets', {
          params: { path: { project, app } },
          body: {
            name,
            generate: { keys, ...(rotateEveryDays !== undefined ? { rotateEveryDays } : {}) },
            ...(o.type ? { type: o.type as Schemas['CreateSecretDto']['type'] } : {}),
          },
        }),
      );
      ctx.print(s, () => `secret ${name}: version ${s.currentVersion} generated (${s.keys.join(', ')}); ${rotationLine(s)}\n`);
    });
  secrets
    .command('get <project> <app> <name>')
    .description('Show a secret: keys, fingerprints, versions, and for generated ones the recipe and schedule (never values).')
    .action(async (project: string, app: string, name: string) => {
      const api = ctx.api();
      const s = await api.ok(
        api.client.GET('/api/v1/projects/{project}/apps/{app}/secrets/{secret}', { params: { path: { project, app, secret: name } } }),
      );
      ctx.print(s, () => {
        const lines = [
          `secret ${s.name} (${s.type}): version ${s.currentVersion} of ${s.latestVersion}, keys ${s.keys.join(', ')}`,
          ...(s.generated
            ? [
                `generated: ${s.generated.keys.map((k) => `${k.key}:${k.kind}:${k.length}`).join(' ')}; last rotated ${s.lastRotatedAt ?? '?'}`,
                rotationLine(s),
              ]
            : []),
        ];
        return `${lines.join('\n')}\n`;
      });
    });
  secrets
    .command('rotate-now <project> <app> <name>')
    .description('Generated secrets: new values from the HSM now, as a new version delivered wherever the app is published.')
    .action(async (project: string, app: string, name: string) => {
      const api = ctx.api();
      const s = await api.ok(
        api.client.POST('/api/v1/projects/{project}/apps/{app}/secrets/{secret}/rotate', {
          params: { path: { project, app, secret: name } },
        }),
      );
      ctx.print(s, () => `secret ${name}: version ${s.currentVersion} generated; ${rotationLine(s)}\n`);
    });
  secrets
    .command('rotation <project> <app> <name>')
    .description('Generated secrets: set (--every 30d) or remove (--off) the automatic rotation schedule.')
    .option('--every <days>', 'rotate every N days, counted from the last rotation')
    .option('--off', 'no automatic rotation')
    .action(async (project: string, app: string, name: string, o: { every?: string; off?: boolean }) => {
      if ((o.every === undefined) === (o.off === undefined)) throw new CliError(EXIT.usage, 'give exactly one of --every <days> or --off');
      const api = ctx.api();
      const path = { project, app, secret: name };
      const s = o.off
        ? await api.ok(api.client.DELETE('/api/v1/projects/{project}/apps/{app}/secrets/{secret}/rotation', { params: { path } }))
        : await api.ok(
            api.client.PUT('/api/v1/projects/{project}/apps/{app}/secrets/{secret}/rotation', {
              params: { path },
              body: { rotateEveryDays: parseDays(o.every!) },
            }),
          );
      ctx.print(s, () => `secret ${name}: ${rotationLine(s)}\n`);
    });
  secrets
    .command('versions <project> <app> <name>')
    .description('List the versions of a secret (fingerprints, never values).')
    .action(async (project: string, app: string, name: string) => {
      const api = ctx.api();
      const v = await api.ok(
        api.client.GET('/api/v1/projects/{project}/apps/{app}/secrets/{secret}/versions', {
          params: { path: { project, app, secret: name } },
        }),
      );
      ctx.print(v, () => table(v, ['version', 'current', 'keys', 'sizeBytes', 'createdBy', 'createdAt']));
    });
  secrets
    .command('rollback <project> <app> <name>')
    .description('Point the secret back at an earlier version (re-delivered wherever the app is published).')
    .requiredOption('--to-version <n>', 'version to return to', positiveInt)
    .action(async (project: string, app: string, name: string, o: { toVersion: number }) => {
      const api = ctx.api();
      await api.ok(
        api.client.POST('/api/v1/projects/{project}/apps/{app}/secrets/{secret}/rollback', {
          params: { path: { project, app, secret: name } },
          body: { version: o.toVersion },
        }),
      );
      ctx.print({ secret: name, version: o.toVersion }, () => `secret ${name} rolled back to version ${o.toVersion}\n`);
    });
}
