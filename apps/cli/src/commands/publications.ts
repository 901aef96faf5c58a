import type { Command } from 'commander';
import type { Api, Schemas } from '../api.js';
import type { CliContext } from '../context.js';
import { CliError, EXIT } from '../exit-codes.js';
import { names, positiveInt } from '../options.js';
import { table } from '../output.js';
import { parseSelector, type LabelSelector } from '../selector.js';

type Publication = Schemas['PublicationView'];

interface WaitOptions {
  wait?: boolean;
  timeout: number;
  idempotencyKey?: string;
}

const withWaitOptions = (c: Command) =>
  c
    .option('--wait', 'wait until every cluster has converged, showing progress')
    .option('--timeout <seconds>', 'give up waiting after this long (exit 5)', positiveInt, 300)
    .option('--idempotency-key <key>', 'a retry with the same key returns the first result');

const idempotency = (o: WaitOptions) => (o.idempotencyKey ? { 'Idempotency-Key': o.idempotencyKey } : {});

export function summaryLine(p: Publication): string {
  const s = p.summary;
  const parts = [`${s.provisioned} of ${s.clusters} clusters provisioned`];
  if (s.pending) parts.push(`${s.pending} pending`);
  if (s.failed) parts.push(`${s.failed} failed`);
  if (s.deprovisioning) parts.push(`${s.deprovisioning} deprovisioning`);
  if (s.deprovisioned) parts.push(`${s.deprovisioned} deprovisioned`);
  return parts.join(', ');
}

/** Prints the result; with --wait, long-polls until converged or --timeout, then sets the exit code. */
async function finish(
  ctx: CliContext,
  api: Api,
  p: Publication,
  at: { project: string; app: string },
  o: WaitOptions,
  started: number,
  verb: string,
): Promise<void> {
  const done = (p: Publication) => ctx.print(p, () => `${at.project}/${at.app} ${verb}: ${summaryLine(p)}\n`);
  if (!o.wait) return done(p);
  const deadline = started + o.timeout * 1000;
  let last = '';
  while (!p.summary.converged && Date.now() < deadline) {
    const line = summaryLine(p);
    if (line !== last) ctx.progress(line);
    last = line;
    const wait = Math.max(1, Math.min(10, Math.ceil((deadline - Date.now()) / 1000)));
    p = await api.ok(
      api.client.GET('/api/v1/projects/{project}/apps/{app}/publication', { params: { path: at, query: { wait: String(wait) } } }),
    );
  }
  done(p);
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

/** `sigil publish`, `unpublish` and `status`: where an app is delivered, and waiting until it is. */
export function registerPublications(program: Command, ctx: CliContext): void {
  withWaitOptions(
    program
      .command('publish <project> <app>')
      .description('Publish the app to clusters by name and/or label selector.')
      .option('--clusters <a,b,...>', 'cluster names', names)
      .option('--selector <selector>', 'label selector, e.g. tier=store,region in (eu-west)', parseSelector),
  ).action(async (project: string, app: string, o: WaitOptions & { clusters?: string[]; selector?: LabelSelector }) => {
    if (!o.clusters && !o.selector) throw new CliError(EXIT.usage, 'give --clusters, --selector, or both');
    const started = Date.now();
    const api = ctx.api();
    const p = await api.ok(
      api.client.POST('/api/v1/projects/{project}/apps/{app}/publish', {
        params: { path: { project, app } },
        body: { ...(o.clusters ? { clusters: o.clusters } : {}), ...(o.selector ? { selector: { ...o.selector } } : {}) },
        headers: idempotency(o),
      }),
    );
    await finish(ctx, api, p, { project, app }, o, started, 'published');
  });

  withWaitOptions(
    program
      .command('unpublish <project> <app>')
      .description('Unpublish the app from the named clusters, or from all; agents delete its Secrets.')
      .option('--clusters <a,b,...>', 'only these clusters', names),
  ).action(async (project: string, app: string, o: WaitOptions & { clusters?: string[] }) => {
    const started = Date.now();
    const api = ctx.api();
    const p = await api.ok(
      api.client.POST('/api/v1/projects/{project}/apps/{app}/unpublish', {
        params: { path: { project, app } },
        body: o.clusters ? { clusters: o.clusters } : {},
        headers: idempotency(o),
      }),
    );
    await finish(ctx, api, p, { project, app }, o, started, 'unpublished');
  });

  program
    .command('status <project> <app>')
    .description('Where the app is published and its state on each cluster.')
    .action(async (project: string, app: string) => {
      const api = ctx.api();
      const p = await api.ok(api.client.GET('/api/v1/projects/{project}/apps/{app}/publication', { params: { path: { project, app } } }));
      ctx.print(
        p,
        () =>
          summaryLine(p) + '\n' + table(p.deliveries, ['cluster', 'state', 'desiredGeneration', 'appliedGeneration', 'reason', 'since']),
      );
    });
}
