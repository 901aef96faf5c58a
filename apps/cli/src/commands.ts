import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { Api, seg } from './api.js';
import { readConfig, resolveTarget, writeConfig } from './config.js';
import { CliError, EXIT } from './exit-codes.js';
import { table } from './output.js';
import { parsePair, parseSelector } from './selector.js';

interface GlobalOpts {
  server?: string;
  token?: string;
  context?: string;
  output: 'text' | 'json';
}

interface Publication {
  project: string;
  app: string;
  summary: {
    clusters: number;
    pending: number;
    provisioned: number;
    failed: number;
    deprovisioning: number;
    deprovisioned: number;
    converged: boolean;
  };
  deliveries: Array<{
    cluster: string;
    state: string;
    desiredGeneration: string;
    appliedGeneration: string;
    reason: string | null;
    since: string;
  }>;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];
const positiveInt = (v: string) => {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new InvalidArgumentError('must be a positive whole number');
  return Number(v);
};
const names = (v: string) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Builds the `sigil` command tree. */
export function buildProgram(): Command {
  const program = new Command('sigil')
    .description('Sigil command-line interface: configure secrets and publish apps to clusters.')
    .version('0.1.0')
    .addOption(new Option('--server <url>', 'control-plane REST URL (env SIGIL_SERVER; else the context)'))
    .addOption(new Option('--token <token>', 'API token (env SIGIL_TOKEN; else the context). Prefer `sigil login`.'))
    .addOption(new Option('--context <name>', 'a context from the config file (env SIGIL_CONTEXT)'))
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
    .addHelpText(
      'after',
      `
Exit codes:
  0  success (with --wait: every cluster converged)
  1  with --wait: at least one cluster failed (named on stderr)
  2  bad input: flags, arguments, or the server refused the request
  3  the control plane is unreachable or not ready
  4  authentication or permission refused
  5  with --wait: --timeout elapsed before every cluster converged`,
    );

  const g = () => program.opts<GlobalOpts>();
  const api = () => {
    const t = resolveTarget(g());
    return new Api(t.server, t.token);
  };
  const print = (data: unknown, text: () => string) =>
    process.stdout.write(g().output === 'json' ? `${JSON.stringify(data, null, 2)}\n` : text());

  program
    .command('login')
    .description(
      'Store a server URL and API token as a named context (file mode 0600). The token is read from stdin unless --token is given.',
    )
    .option('--name <context>', 'context name', 'default')
    .action(async (opts: { name: string }) => {
      const server = g().server ?? process.env.SIGIL_SERVER;
      if (!server) throw new CliError(EXIT.usage, 'give --server <url>');
      if (!g().token && !process.env.SIGIL_TOKEN && process.stdin.isTTY) process.stderr.write('API token, then Ctrl-D: ');
      const token = (g().token ?? process.env.SIGIL_TOKEN ?? (await readStdin())).trim();
      if (!token) throw new CliError(EXIT.usage, 'no token on stdin');
      await new Api(server, token).get('/projects?limit=1'); // proves the token works before storing it
      const cfg = readConfig();
      cfg.contexts[opts.name] = { server, token };
      cfg.currentContext = opts.name;
      const file = writeConfig(cfg);
      print({ context: opts.name, server, config: file }, () => `logged in to ${server} as context ${opts.name} (${file})\n`);
    });

  program
    .command('health')
    .description('Whether the control plane and its dependencies (PostgreSQL, Redis, HSM) are ready.')
    .action(async () => {
      const { server } = resolveTarget(g());
      let res: Response;
      try {
        res = await fetch(new URL('/readyz', server), { signal: AbortSignal.timeout(5_000) });
      } catch (err) {
        throw new CliError(EXIT.unavailable, `cannot reach ${server}: ${(err as Error).message}`);
      }
      const body = (await res.json()) as { failed?: string[] };
      print(body, () => (res.ok ? 'ready\n' : `not ready: ${(body.failed ?? []).join(', ')}\n`));
      if (!res.ok) throw new CliError(EXIT.unavailable, '');
    });

  const projects = program.command('projects').description('Projects.');
  projects
    .command('list')
    .description('List projects.')
    .action(async () => {
      const page = await api().get<{ items: Array<Record<string, unknown>> }>('/projects?limit=500');
      print(page.items, () => table(page.items, ['name', 'description', 'createdAt']));
    });
  projects
    .command('create <name>')
    .description('Create a project.')
    .option('--description <text>', 'description', '')
    .action(async (name: string, o: { description: string }) => {
      const p = await api().post<Record<string, unknown>>('/projects', { name, description: o.description });
      print(p, () => `project ${name} created\n`);
    });
  projects
    .command('allow-clusters <project>')
    .description('Admin: which clusters the project may publish to (a label selector; "" allows all).')
    .requiredOption('--selector <selector>', 'e.g. tier=store,region in (eu-west,eu-north)', parseSelector)
    .action(async (project: string, o: { selector: ReturnType<typeof parseSelector> }) => {
      await api().put(`/projects/${seg(project)}/cluster-selector`, { selector: o.selector });
      print({ project, selector: o.selector }, () => `project ${project} may publish to clusters matching ${JSON.stringify(o.selector)}\n`);
    });

  projects
    .command('namespaces <project> [namespaces...]')
    .description('Admin: set the Kubernetes namespaces the project holds (all of them); without namespaces, list them.')
    .action(async (project: string, namespaces: string[]) => {
      const r = namespaces.length
        ? await api().put<{ namespaces: string[] }>(`/projects/${seg(project)}/namespaces`, { namespaces })
        : await api().get<{ namespaces: string[] }>(`/projects/${seg(project)}/namespaces`);
      print(r, () => `project ${project} holds namespaces: ${r.namespaces.join(', ') || '(none)'}\n`);
    });

  const apps = program.command('apps').description('Apps of a project.');
  apps
    .command('list <project>')
    .description('List apps.')
    .action(async (project: string) => {
      const page = await api().get<{ items: Array<Record<string, unknown>> }>(`/projects/${seg(project)}/apps?limit=500`);
      print(page.items, () => table(page.items, ['name', 'namespace', 'deliveryMode', 'secretType']));
    });
  apps
    .command('create <project> <name>')
    .description('Create an app: where its Secrets go and how pods consume them.')
    .requiredOption('--namespace <namespace>', 'Kubernetes namespace of its Secrets')
    .addOption(new Option('--mode <mode>', 'env (envFrom) or volume (in-memory files)').choices(['env', 'volume']).default('env'))
    .option('--mount-path <path>', 'for volume mode')
    .action(async (project: string, name: string, o: { namespace: string; mode: string; mountPath?: string }) => {
      const a = await api().post<Record<string, unknown>>(`/projects/${seg(project)}/apps`, {
        name,
        namespace: o.namespace,
        deliveryMode: o.mode,
        ...(o.mountPath ? { mountPath: o.mountPath } : {}),
      });
      print(a, () => `app ${project}/${name} created\n`);
    });

  const secrets = program.command('secrets').description('Write-only secrets of an app.');
  secrets
    .command('list <project> <app>')
    .description('List secrets (names, keys, versions; never values).')
    .action(async (project: string, app: string) => {
      const page = await api().get<{ items: Array<Record<string, unknown>> }>(
        `/projects/${seg(project)}/apps/${seg(app)}/secrets?limit=500`,
      );
      print(page.items, () => table(page.items, ['name', 'type', 'currentVersion', 'latestVersion', 'keys']));
    });
  secrets
    .command('set <project> <app> <name>')
    .description('Create the secret or write a new version of it. Values are never echoed.')
    .option('--from-literal <KEY=VALUE>', 'a value (repeatable; visible in shell history — prefer the others)', collect)
    .option('--from-file <KEY=PATH>', 'a value read from a file (repeatable; binary-safe)', collect)
    .option('--stdin <KEY>', 'one value read from stdin')
    .option('--type <type>', 'Kubernetes Secret type (new secrets only)')
    .action(
      async (
        project: string,
        app: string,
        name: string,
        o: { fromLiteral?: string[]; fromFile?: string[]; stdin?: string; type?: string },
      ) => {
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
        if (o.stdin) binaryData[o.stdin] = Buffer.from(await readStdin()).toString('base64');
        if (Object.keys(binaryData).length === 0) throw new CliError(EXIT.usage, 'give values with --from-literal, --from-file or --stdin');
        const base = `/projects/${seg(project)}/apps/${seg(app)}/secrets`;
        let result: { currentVersion?: number };
        try {
          result = await api().put(`${base}/${seg(name)}`, { binaryData });
        } catch (err) {
          if (!(err instanceof CliError && /secret_not_found/.test(err.message))) throw err;
          result = await api().post(base, { name, binaryData, ...(o.type ? { type: o.type } : {}) });
        }
        print(
          { secret: name, version: result.currentVersion },
          () => `secret ${name}: version ${result.currentVersion ?? '?'} written (${Object.keys(binaryData).length} keys)\n`,
        );
      },
    );
  secrets
    .command('versions <project> <app> <name>')
    .description('List the versions of a secret (fingerprints, never values).')
    .action(async (project: string, app: string, name: string) => {
      const v = await api().get<Array<Record<string, unknown>>>(`/projects/${seg(project)}/apps/${seg(app)}/secrets/${seg(name)}/versions`);
      print(v, () => table(v, ['version', 'current', 'keys', 'sizeBytes', 'createdBy', 'createdAt']));
    });
  secrets
    .command('rollback <project> <app> <name>')
    .description('Point the secret back at an earlier version (re-delivered wherever the app is published).')
    .requiredOption('--to-version <n>', 'version to return to', positiveInt)
    .action(async (project: string, app: string, name: string, o: { toVersion: number }) => {
      await api().post(`/projects/${seg(project)}/apps/${seg(app)}/secrets/${seg(name)}/rollback`, { version: o.toVersion });
      print({ secret: name, version: o.toVersion }, () => `secret ${name} rolled back to version ${o.toVersion}\n`);
    });

  const clusters = program.command('clusters').description('Clusters.');
  clusters
    .command('list')
    .description('List clusters with their state and generations.')
    .option('--labels <k=v,...>', 'only clusters with these labels')
    .action(async (o: { labels?: string }) => {
      const page = await api().get<{ items: Array<Record<string, unknown>> }>(
        `/clusters?limit=500${o.labels ? `&labels=${encodeURIComponent(o.labels)}` : ''}`,
      );
      print(page.items, () => table(page.items, ['name', 'state', 'labels', 'desiredGeneration', 'appliedGeneration', 'lastSeenAt']));
    });
  clusters
    .command('register <name>')
    .description('Admin: register a cluster.')
    .option('--label <k=v>', 'a label (repeatable)', collect)
    .action(async (name: string, o: { label?: string[] }) => {
      const labels = Object.fromEntries((o.label ?? []).map((l) => parsePair(l, '--label')));
      const c = await api().post<Record<string, unknown>>('/clusters', { name, labels });
      print(c, () => `cluster ${name} registered\n`);
    });
  clusters
    .command('relabel <name> [labels...]')
    .description('Admin: replace a cluster’s labels (k=v ...); it joins or leaves selector publications.')
    .action(async (name: string, labels: string[]) => {
      const c = await api().patch<Record<string, unknown>>(`/clusters/${seg(name)}`, {
        labels: Object.fromEntries(labels.map((l) => parsePair(l, 'a label'))),
      });
      print(c, () => `cluster ${name} relabelled\n`);
    });
  clusters
    .command('token <name>')
    .description('Admin: a one-time enrollment token for the cluster’s agent (printed once).')
    .option('--ttl <seconds>', 'lifetime', positiveInt)
    .action(async (name: string, o: { ttl?: number }) => {
      const t = await api().post<{ token: string; expiresAt: string }>(
        `/clusters/${seg(name)}/enrollment-tokens`,
        o.ttl ? { ttlSeconds: o.ttl } : {},
      );
      print(t, () => `${t.token}\n`);
    });

  const waitOptions = (c: Command) =>
    c
      .option('--wait', 'wait until every cluster has converged, showing progress')
      .option('--timeout <seconds>', 'give up waiting after this long (exit 5)', positiveInt, 300)
      .option('--idempotency-key <key>', 'a retry with the same key returns the first result');

  waitOptions(
    program
      .command('publish <project> <app>')
      .description('Publish the app to clusters by name and/or label selector.')
      .option('--clusters <a,b,...>', 'cluster names', names)
      .option('--selector <selector>', 'label selector, e.g. tier=store,region in (eu-west)', parseSelector),
  ).action(
    async (
      project: string,
      app: string,
      o: { clusters?: string[]; selector?: object; wait?: boolean; timeout: number; idempotencyKey?: string },
    ) => {
      if (!o.clusters && !o.selector) throw new CliError(EXIT.usage, 'give --clusters, --selector, or both');
      const body = { ...(o.clusters ? { clusters: o.clusters } : {}), ...(o.selector ? { selector: o.selector } : {}) };
      const started = Date.now();
      const p = await api().post<Publication>(
        `/projects/${seg(project)}/apps/${seg(app)}/publish`,
        body,
        o.idempotencyKey ? { 'Idempotency-Key': o.idempotencyKey } : {},
      );
      await finish(p, project, app, o, started, 'published');
    },
  );

  waitOptions(
    program
      .command('unpublish <project> <app>')
      .description('Unpublish the app from the named clusters, or from all; agents delete its Secrets.')
      .option('--clusters <a,b,...>', 'only these clusters', names),
  ).action(async (project: string, app: string, o: { clusters?: string[]; wait?: boolean; timeout: number; idempotencyKey?: string }) => {
    const started = Date.now();
    const p = await api().post<Publication>(
      `/projects/${seg(project)}/apps/${seg(app)}/unpublish`,
      o.clusters ? { clusters: o.clusters } : {},
      o.idempotencyKey ? { 'Idempotency-Key': o.idempotencyKey } : {},
    );
    await finish(p, project, app, o, started, 'unpublished');
  });

  program
    .command('status <project> <app>')
    .description('Where the app is published and its state on each cluster.')
    .action(async (project: string, app: string) => {
      const p = await api().get<Publication>(`/projects/${seg(project)}/apps/${seg(app)}/publication`);
      print(
        p,
        () =>
          summaryLine(p) + '\n' + table(p.deliveries, ['cluster', 'state', 'desiredGeneration', 'appliedGeneration', 'reason', 'since']),
      );
    });

  /** Prints the result; with --wait, long-polls until converged or --timeout, then sets the exit code. */
  async function finish(
    p: Publication,
    project: string,
    app: string,
    o: { wait?: boolean; timeout: number },
    started: number,
    verb: string,
  ): Promise<void> {
    if (!o.wait) {
      print(p, () => `${project}/${app} ${verb}: ${summaryLine(p)}\n`);
      return;
    }
    const deadline = started + o.timeout * 1000;
    let last = '';
    while (!p.summary.converged && Date.now() < deadline) {
      const line = summaryLine(p);
      if (line !== last && g().output === 'text') process.stderr.write(`${line}\n`);
      last = line;
      const wait = Math.max(1, Math.min(10, Math.ceil((deadline - Date.now()) / 1000)));
      p = await api().get<Publication>(`/projects/${seg(project)}/apps/${seg(app)}/publication?wait=${wait}`);
    }
    print(p, () => `${project}/${app} ${verb}: ${summaryLine(p)}\n`);
    const failed = p.deliveries.filter((d) => d.state === 'failed');
    if (failed.length > 0) {
      throw new CliError(
        EXIT.failed,
        `failed on ${failed.length} cluster(s): ${failed.map((d) => `${d.cluster} (${d.reason ?? 'unknown'})`).join(', ')}`,
      );
    }
    if (!p.summary.converged) {
      const waiting = p.deliveries.filter((d) => d.state === 'pending' || d.state === 'deprovisioning').map((d) => d.cluster);
      throw new CliError(
        EXIT.timeout,
        `timed out after ${o.timeout} s; still waiting for: ${waiting.slice(0, 20).join(', ')}${waiting.length > 20 ? ', …' : ''}`,
      );
    }
  }

  return program;
}

function summaryLine(p: Publication): string {
  const s = p.summary;
  const parts = [`${s.provisioned} of ${s.clusters} clusters provisioned`];
  if (s.pending) parts.push(`${s.pending} pending`);
  if (s.failed) parts.push(`${s.failed} failed`);
  if (s.deprovisioning) parts.push(`${s.deprovisioning} deprovisioning`);
  if (s.deprovisioned) parts.push(`${s.deprovisioned} deprovisioned`);
  return parts.join(', ');
}
