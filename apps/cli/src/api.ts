import createClient, { type Client } from 'openapi-fetch';
import { CliError, EXIT } from './exit-codes.js';
import type { components, paths } from '@sigil/rest-api';

/** The server's DTOs, generated from its OpenAPI document (`make generate`). */
export type Schemas = components['schemas'];
export type Problem = Schemas['ProblemView'];
export type SigilClient = Client<paths>;

/** problem+json codes the CLI acts on (not only reports). */
export const PROBLEM = {
  secretNotFound: 'secret_not_found',
} as const;

/** What an openapi-fetch call resolves to: data on 2xx, the parsed error body otherwise. */
interface Answer<D> {
  data?: D;
  error?: unknown;
  response: Response;
}

/** Long enough for the longest server-side wait (`?wait=` long-polls up to 300 s). */
export const REQUEST_TIMEOUT_MS = 330_000;

/**
 * The REST API as a typed client (paths, parameters and bodies checked against the generated
 * types), with failures turned into exit codes and one-line messages (never values).
 */
export class Api {
  readonly client: SigilClient;

  constructor(
    readonly server: string,
    token: string | undefined,
    fetchImpl: typeof fetch,
    timeoutMs = REQUEST_TIMEOUT_MS,
  ) {
    let origin: string;
    try {
      origin = new URL(server).origin; // paths are absolute (/api/v1/…, /readyz), as with `new URL(path, server)`
    } catch {
      throw new CliError(EXIT.usage, `${JSON.stringify(server)} is not a URL (--server, SIGIL_SERVER or the context)`);
    }
    this.client = createClient<paths>({
      baseUrl: origin,
      fetch: (req) => fetchImpl(req, { signal: AbortSignal.timeout(timeoutMs) }),
      ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}),
    });
  }

  /** The body of a 2xx answer; anything else becomes a CliError carrying the problem's `code`. */
  async ok<D>(pending: Promise<Answer<D>>): Promise<D> {
    const answer = await this.reach(pending);
    if (answer.response.ok) return answer.data as D;
    throw problemError(answer.response.status, answer.error);
  }

  /** The answer whatever its status (for /readyz, whose 503 is a report, not a failure). */
  async reach<D>(pending: Promise<Answer<D>>): Promise<Answer<D>> {
    try {
      return await pending;
    } catch (err) {
      throw new CliError(EXIT.unavailable, `cannot reach ${this.server}: ${(err as Error).message}`);
    }
  }
}

/** An error answer as the exit code its status means and a one-line message: detail, field problems, code. */
export function problemError(status: number, body: unknown): CliError {
  const p: Partial<Problem> = typeof body === 'object' && body !== null ? body : {};
  const detail = [p.detail ?? p.title ?? `HTTP ${status}`, ...(p.errors ?? []).map((e) => `${e.field}: ${e.problem}`)].join('; ');
  const code = typeof p.code === 'string' ? p.code : undefined;
  const reason = typeof p.reason === 'string' ? `: ${p.reason}` : '';
  const message = `${detail}${code ? ` (${code}${reason})` : ''}`;
  if (status === 401 || status === 403) return new CliError(EXIT.auth, message, code);
  if (status === 429 || status >= 500) return new CliError(EXIT.unavailable, message, code);
  return new CliError(EXIT.usage, message, code);
}
