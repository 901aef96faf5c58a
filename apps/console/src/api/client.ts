// The console's one way to the REST API: openapi-fetch typed by the generated OpenAPI types
// (libs/rest-api), same origin, the session cookie sent by the browser (never a token in
// storage), and the session's CSRF token on every mutation.
import createClient, { type Middleware } from 'openapi-fetch';
import type { components, paths } from '@sigil/rest-api';

export type Schemas = components['schemas'];
export type Problem = Schemas['ProblemView'];

/** A refused or failed call, with the API's machine-readable code and its sentence. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    detail: string,
    readonly fields: Schemas['ProblemFieldView'][] = [],
  ) {
    super(detail);
  }

  static from(status: number, body: unknown): ApiError {
    const p = (body ?? {}) as Partial<Problem>;
    const detail = p.detail ?? p.title ?? (status === 0 ? 'the control plane cannot be reached' : `request failed (${status})`);
    return new ApiError(status, p.code ?? 'unknown', detail, p.errors ?? []);
  }
}

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
let csrfToken: string | null = null;
let onSignedOut: () => void = () => undefined;

/** Set by the session once signed in; cleared at sign-out. */
export function setCsrfToken(token: string | null): void {
  csrfToken = token;
}

/** Called when the server says the session is gone (expired, signed out elsewhere). */
export function onSessionEnded(handler: () => void): void {
  onSignedOut = handler;
}

const session: Middleware = {
  onRequest({ request }) {
    if (MUTATING.has(request.method) && csrfToken) request.headers.set('X-CSRF-Token', csrfToken);
    return request;
  },
  onResponse({ response, request }) {
    // A 401 on anything but the session probe itself means the session ended under us.
    if (response.status === 401 && !new URL(request.url).pathname.endsWith('/console/session')) onSignedOut();
    return response;
  },
};

export const api = createClient<paths>({ baseUrl: window.location.origin, credentials: 'same-origin' });
api.use(session);

/** Unwraps an openapi-fetch result: the data, or an ApiError with the problem's code. */
export async function call<T>(pending: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  let result: { data?: T; error?: unknown; response: Response };
  try {
    result = await pending;
  } catch {
    throw ApiError.from(0, undefined);
  }
  if (!result.response.ok) throw ApiError.from(result.response.status, result.error);
  return result.data as T;
}

/** What to show for an error: the API's sentence, field problems included. */
export function describeError(err: unknown): string {
  if (err instanceof ApiError) {
    const fields = err.fields.map((f) => `${f.field}: ${f.problem}`).join('; ');
    // A validation failure's message already is its fields; say them once.
    return fields && fields !== err.message ? `${err.message} (${fields})` : err.message;
  }
  return err instanceof Error ? err.message : String(err);
}
