import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server } from 'node:https';
import type { Logger } from '@sigil/logging';
import type { AgentMetrics } from '../metrics.js';
import { InjectionRefused, REFUSALS, type InjectionService } from './injection-service.js';
import { mutatePod, type InjectablePod, type MutationSettings } from './mutate.js';

const { createServer } = process.getBuiltinModule('node:https');

/** An AdmissionReview is at most the API server's request limit; pods are far smaller. */
const MAX_REVIEW_BYTES = 3 * 1024 * 1024;
/** A sidecar's long poll answers at the latest after this, so that proxies and the token's expiry never cut it. */
const MAX_WAIT_SECONDS = 55;
const MAX_CONNECTIONS = 4_096;
const INJECT_PATH = /^\/v1\/inject\/([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$/;

export interface InjectionServerOptions {
  keyPem: string;
  certificatePem: string;
  service: InjectionService;
  mutation: MutationSettings;
  metrics: AgentMetrics;
  logger: Logger;
}

/**
 * The agent's injection port (TLS, its in-memory serving certificate): `POST /mutate` for the
 * API server's admission webhook, `GET /v1/inject/<app>` for the injector in pods (init once,
 * sidecar as a long poll with `?known=<stamp>&wait=<seconds>`), `GET /healthz`.
 */
export class InjectionServer {
  private readonly server: Server;
  private readonly polls = new Set<AbortController>();

  constructor(private readonly opts: InjectionServerOptions) {
    this.server = createServer({ key: opts.keyPem, cert: opts.certificatePem, minVersion: 'TLSv1.2' }, (req, res) => {
      void this.route(req, res).catch((err: unknown) => {
        opts.logger.warn({ path: req.url?.split('?')[0], error: (err as Error).name }, 'injection request failed');
        if (!res.headersSent) json(res, 500, { reason: 'internal', message: 'the agent could not answer' });
      });
    });
    this.server.headersTimeout = 10_000;
    // Bounded: every connection costs memory, and a long poll holds one for up to a minute.
    this.server.maxConnections = MAX_CONNECTIONS;
    this.server.requestTimeout = (MAX_WAIT_SECONDS + 10) * 1000;
  }

  /** Presents a new serving certificate to connections from now on (a renewal; the trust is unchanged). */
  useCertificate(keyPem: string, certificatePem: string): void {
    this.server.setSecureContext({ key: keyPem, cert: certificatePem, minVersion: 'TLSv1.2' });
  }

  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => resolve((this.server.address() as { port: number }).port));
    });
  }

  async stop(): Promise<void> {
    for (const p of this.polls) p.abort();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://agent');
    if (url.pathname === '/healthz' && req.method === 'GET') return json(res, 200, { status: 'ok' });
    if (url.pathname === '/mutate' && req.method === 'POST') return this.admit(req, res);
    const m = INJECT_PATH.exec(url.pathname);
    if (m && req.method === 'GET') return this.inject(req, res, m[1]!, url.searchParams);
    json(res, 404, { reason: 'not-found', message: 'no such path' });
  }

  private async admit(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { metrics, logger } = this.opts;
    let review: { apiVersion?: string; request?: { uid?: string; namespace?: string; object?: InjectablePod } };
    try {
      review = JSON.parse((await readBody(req, MAX_REVIEW_BYTES)).toString('utf8')) as typeof review;
    } catch {
      metrics.injectionMutations.inc({ outcome: 'error' });
      return json(res, 400, { reason: 'bad-review', message: 'the body is not an AdmissionReview' });
    }
    const uid = review.request?.uid;
    if (!uid || !review.request?.object) {
      metrics.injectionMutations.inc({ outcome: 'error' });
      return json(res, 400, { reason: 'bad-review', message: 'the AdmissionReview has no request' });
    }
    const mutation = mutatePod(review.request.object, this.opts.mutation);
    const response: Record<string, unknown> = { uid, allowed: true };
    if (mutation.kind === 'patch') {
      response.patchType = 'JSONPatch';
      response.patch = Buffer.from(JSON.stringify(mutation.ops)).toString('base64');
      logger.info({ namespace: review.request.namespace, app: mutation.app }, 'injected a pod');
    } else if (mutation.kind === 'deny') {
      response.allowed = false;
      response.status = { code: 400, reason: 'BadRequest', message: mutation.message };
      logger.warn({ namespace: review.request.namespace, message: mutation.message }, 'refused to inject a pod');
    }
    metrics.injectionMutations.inc({ outcome: mutation.kind === 'patch' ? 'patched' : mutation.kind === 'deny' ? 'denied' : 'skipped' });
    json(res, 200, { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response });
  }

  private async inject(req: IncomingMessage, res: ServerResponse, app: string, query: URLSearchParams): Promise<void> {
    const { service } = this.opts;
    const auth = req.headers.authorization;
    const token = auth?.startsWith('Bearer ') ? auth.slice(7).trim() : undefined;
    try {
      const who = await service.identify(token);
      let authorized = service.authorize(who, app);
      const known = query.get('known');
      const wait = Math.min(Number(query.get('wait') ?? 0) || 0, MAX_WAIT_SECONDS);
      if (known && known === authorized.stamp) {
        if (wait > 0) {
          const poll = new AbortController();
          this.polls.add(poll);
          res.once('close', () => poll.abort());
          const deadline = Date.now() + wait * 1000;
          try {
            while (authorized.stamp === known && Date.now() < deadline && !poll.signal.aborted) {
              await service.waitForChange(deadline - Date.now(), poll.signal);
              authorized = service.authorize(who, app); // consumers or publication may have changed
            }
          } finally {
            this.polls.delete(poll);
          }
        }
        if (authorized.stamp === known) {
          res.writeHead(304, { etag: `"${known}"`, 'cache-control': 'no-store' }).end();
          return;
        }
      }
      json(res, 200, service.answer(who, app, authorized), { etag: `"${authorized.stamp}"` });
    } catch (err) {
      if (!(err instanceof InjectionRefused)) throw err;
      json(res, REFUSALS[err.reason].status, { reason: err.reason, message: err.message });
    }
  }
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const payload = Buffer.from(JSON.stringify(body));
  res
    .writeHead(status, {
      'content-type': 'application/json',
      'content-length': String(payload.length),
      'cache-control': 'no-store',
      ...headers,
    })
    .end(payload);
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > limit) throw new Error('too large');
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}
