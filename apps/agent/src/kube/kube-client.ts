import { readFileSync } from 'node:fs';
import { request, type RequestOptions } from 'node:https';
import path from 'node:path';
import { getCACertificates } from 'node:tls';
import { load } from 'js-yaml';

/**
 * A deliberately small Kubernetes API client for the agent: JSON over HTTPS with the pod's
 * service-account credentials (or a kubeconfig's token / client certificate), plus watch
 * streams. The agent built on @kubernetes/client-node, bundled and tree-shaken, idles at 63.5 MiB
 * even when it takes only KubeConfig (which loads undici and its auth providers' packages eagerly,
 * and all 914 generated models unless the build declares it free of side effects), over the
 * agent's 60 MB budget (docs/decisions/007, measured 2026-12-02). Tests and the harness use
 * @kubernetes/client-node against the same API server.
 */
export interface KubeAccess {
  server: string;
  ca?: Buffer | string[];
  /** Read on every request: projected service-account tokens rotate under the pod. */
  token?: () => string;
  cert?: Buffer;
  key?: Buffer;
}

export class KubeError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
  ) {
    super(`Kubernetes API ${code}${reason ? ` ${reason}` : ''}`);
    this.name = 'KubeError';
  }
}

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export function inClusterAccess(): KubeAccess {
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const port = process.env.KUBERNETES_SERVICE_PORT ?? '443';
  if (!host) throw new Error('not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST unset); give --kubeconfig');
  return {
    server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    ca: readFileSync(path.join(SA_DIR, 'ca.crt')),
    token: () => readFileSync(path.join(SA_DIR, 'token'), 'utf8').trim(),
  };
}

interface Kubeconfig {
  'current-context'?: string;
  contexts?: Array<{ name: string; context: { cluster: string; user: string } }>;
  clusters?: Array<{ name: string; cluster: { server: string; 'certificate-authority-data'?: string; 'certificate-authority'?: string } }>;
  users?: Array<{
    name: string;
    user: {
      token?: string;
      tokenFile?: string;
      'client-certificate-data'?: string;
      'client-certificate'?: string;
      'client-key-data'?: string;
      'client-key'?: string;
    };
  }>;
}

/** The current context of a kubeconfig: token, token file or client certificate (no exec plugins). */
export function kubeconfigAccess(file: string): KubeAccess {
  const cfg = load(readFileSync(file, 'utf8')) as Kubeconfig;
  const ctx = cfg.contexts?.find((c) => c.name === cfg['current-context'])?.context;
  const cluster = cfg.clusters?.find((c) => c.name === ctx?.cluster)?.cluster;
  const user = cfg.users?.find((u) => u.name === ctx?.user)?.user;
  if (!ctx || !cluster) throw new Error(`kubeconfig ${file}: no current context with a cluster`);
  const rel = (p: string) => (path.isAbsolute(p) ? p : path.join(path.dirname(file), p));
  const dataOrFile = (data?: string, f?: string) => (data ? Buffer.from(data, 'base64') : f ? readFileSync(rel(f)) : undefined);
  const token = user?.token ?? (user?.tokenFile ? readFileSync(rel(user.tokenFile), 'utf8').trim() : undefined);
  return {
    server: cluster.server.replace(/\/$/, ''),
    // The agent runs with --use-openssl-ca (runtime-flags.ts) so that Node does not parse its
    // bundled root certificates, which no connection of the agent's uses: they all name their CA.
    // A kubeconfig without one keeps the trust it had before that flag: the bundled roots and
    // NODE_EXTRA_CA_CERTS.
    ca: dataOrFile(cluster['certificate-authority-data'], cluster['certificate-authority']) ?? [
      ...getCACertificates('bundled'),
      ...getCACertificates('extra'),
    ],
    ...(token ? { token: () => token } : {}),
    cert: dataOrFile(user?.['client-certificate-data'], user?.['client-certificate']),
    key: dataOrFile(user?.['client-key-data'], user?.['client-key']),
  };
}

export class KubeClient {
  constructor(private readonly access: KubeAccess) {}

  private options(method: string, path: string, headers: Record<string, string>, signal?: AbortSignal): RequestOptions & { href: string } {
    const a = this.access;
    return {
      href: `${a.server}${path}`,
      method,
      headers: { accept: 'application/json', ...(a.token ? { authorization: `Bearer ${a.token()}` } : {}), ...headers },
      ...(a.ca ? { ca: a.ca } : {}),
      ...(a.cert && a.key ? { cert: a.cert, key: a.key } : {}),
      timeout: 30_000,
      ...(signal ? { signal } : {}),
    };
  }

  /** One JSON request; non-2xx answers throw a KubeError with the status code. */
  async request<T>(method: string, path: string, body?: unknown, contentType = 'application/json', accept?: string): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const { href, ...opts } = this.options(method, path, {
      ...(payload ? { 'content-type': contentType, 'content-length': String(payload.length) } : {}),
      ...(accept ? { accept } : {}),
    });
    return new Promise<T>((resolve, reject) => {
      const req = request(href, opts, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) {
            resolve((text ? JSON.parse(text) : undefined) as T);
            return;
          }
          let reason = '';
          try {
            reason = (JSON.parse(text) as { reason?: string }).reason ?? '';
          } catch {
            // not a Status object
          }
          reject(new KubeError(status, reason));
        });
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`no answer from the Kubernetes API within 30 s (${method} ${path})`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  /**
   * A watch stream: calls `onEvent` for each event until the server closes it, `signal` aborts
   * it, or it fails. Resolves when it ends (callers reconnect).
   */
  watch(
    path: string,
    onEvent: (type: string, object: Record<string, unknown>) => void,
    signal: AbortSignal,
    accept?: string,
  ): Promise<void> {
    const { href, ...opts } = this.options('GET', path, accept ? { accept } : {}, signal);
    return new Promise((resolve) => {
      const req = request(href, { ...opts, timeout: 0 }, (res) => {
        if ((res.statusCode ?? 0) !== 200) {
          res.resume();
          resolve();
          return;
        }
        let buffered = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buffered += chunk;
          let nl;
          while ((nl = buffered.indexOf('\n')) >= 0) {
            const line = buffered.slice(0, nl).trim();
            buffered = buffered.slice(nl + 1);
            if (!line) continue;
            let e: { type: string; object: Record<string, unknown> };
            try {
              e = JSON.parse(line) as typeof e;
            } catch {
              // A malformed line is a lost event: end the stream, so that the caller lists again.
              req.destroy();
              resolve();
              return;
            }
            onEvent(e.type, e.object);
          }
        });
        res.on('end', () => resolve());
        res.on('error', () => resolve());
      });
      req.on('error', () => resolve());
      req.end();
    });
  }
}
