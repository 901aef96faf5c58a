import { CliError, EXIT } from './exit-codes.js';

interface Problem {
  code?: string;
  detail?: string;
  title?: string;
  errors?: Array<{ field: string; problem: string }>;
}

/** The REST API, with errors turned into exit codes and one-line messages (never values). */
export class Api {
  constructor(
    readonly server: string,
    private readonly token: string | undefined,
  ) {}

  async request<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    if (!this.token) throw new CliError(EXIT.auth, 'no API token: run `sigil login`, or set SIGIL_TOKEN or --token');
    let res: Response;
    try {
      res = await fetch(new URL(`/api/v1${path}`, this.server), {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...headers,
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(330_000),
      });
    } catch (err) {
      throw new CliError(EXIT.unavailable, `cannot reach ${this.server}: ${(err as Error).message}`);
    }
    const text = await res.text();
    if (res.ok) return (text ? JSON.parse(text) : undefined) as T;
    let p: Problem = {};
    try {
      p = JSON.parse(text) as Problem;
    } catch {
      // not problem+json
    }
    const detail = [p.detail ?? p.title ?? `HTTP ${res.status}`, ...(p.errors ?? []).map((e) => `${e.field}: ${e.problem}`)].join('; ');
    const message = `${detail}${p.code ? ` (${p.code})` : ''}`;
    if (res.status === 401 || res.status === 403) throw new CliError(EXIT.auth, message);
    if (res.status === 429 || res.status >= 500) throw new CliError(EXIT.unavailable, message);
    throw new CliError(EXIT.usage, message);
  }

  get<T>(path: string) {
    return this.request<T>('GET', path);
  }
  post<T>(path: string, body: unknown = {}, headers?: Record<string, string>) {
    return this.request<T>('POST', path, body, headers);
  }
  put<T>(path: string, body: unknown) {
    return this.request<T>('PUT', path, body);
  }
  patch<T>(path: string, body: unknown) {
    return this.request<T>('PATCH', path, body);
  }
}

export const seg = (s: string) => encodeURIComponent(s);
