import { ArgumentsHost, Catch, HttpException, HttpStatus, type ExceptionFilter } from '@nestjs/common';
import type { Request, Response } from 'express';
import type { PinoLogger } from 'nestjs-pino';
import { asDependencyError, DEPENDENCY_RETRY_AFTER_S } from '../common/dependency.errors.js';
import { SigilError, type ErrorKind } from '../common/sigil-error.js';
import { sqlState } from '../database/constraint-violation.js';

/**
 * The REST status of each kind of error. Every feature's code has a kind (its `ErrorKinds`
 * table), so with this table total too, every code maps to a status or the build fails.
 */
export const HTTP_STATUS: Readonly<Record<ErrorKind, number>> = {
  invalid: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  precondition_failed: 412,
  too_large: 413,
  rate_limited: 429,
  unavailable: 503,
  upstream_failed: 502,
};

/** RFC 9457 problem details; `code` is the stable, machine-readable part. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  code: string;
  /** A finer cause under `code` (SigilErrorOptions.reason). */
  reason?: string;
  detail?: string;
  errors?: Array<{ field: string; problem: string }>;
  instance?: string;
  requestId?: string;
}

const CODES: Record<number, string> = {
  400: 'bad_request',
  401: 'unauthenticated',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  409: 'conflict',
  412: 'precondition_failed',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  422: 'unprocessable',
  429: 'rate_limited',
};

/** Errors raised by the JSON body parser before any handler runs. */
const BODY_PARSER: Record<string, { status: number; code: string; detail: string }> = {
  'entity.parse.failed': { status: 400, code: 'malformed_json', detail: 'the request body is not valid JSON' },
  'entity.too.large': {
    status: 413,
    code: 'payload_too_large',
    detail: 'the request body is too large (a secret fits when its values are sent base64-encoded as binaryData)',
  },
  'encoding.unsupported': { status: 415, code: 'unsupported_encoding', detail: 'the request body encoding is not supported' },
  'charset.unsupported': { status: 415, code: 'unsupported_charset', detail: 'the request body charset is not supported' },
  'request.aborted': { status: 400, code: 'request_aborted', detail: 'the request was aborted' },
};

const DATABASE_CODES: Record<string, [number, string, string]> = {
  '23505': [409, 'conflict', 'a resource with this name was created concurrently'],
  '23503': [409, 'conflict', 'a related resource was changed or removed concurrently; retry'],
  '22021': [400, 'invalid_encoding', 'input contains bytes that cannot be stored (e.g. NUL)'],
  '22P05': [400, 'invalid_encoding', 'input contains characters that cannot be stored'],
  '54000': [400, 'too_large', 'input is too large'],
};

export function problem(status: number, code: string, detail?: string): Problem {
  return {
    type: 'about:blank',
    title: HttpStatus[status]?.replace(/_/g, ' ').toLowerCase() ?? 'error',
    status,
    code,
    ...(detail ? { detail } : {}),
  };
}

/**
 * Maps everything thrown out of a request to `application/problem+json`. Unexpected errors
 * become a generic 500 carrying only the request id: never a stack trace or a message that
 * could contain data.
 */
@Catch()
export class ProblemDetailsFilter implements ExceptionFilter {
  constructor(private readonly logger: PinoLogger) {
    logger.setContext('http');
  }

  catch(exception: unknown, host: ArgumentsHost): void {
    const ctx = host.switchToHttp();
    const req = ctx.getRequest<Request & { id?: string }>();
    const res = ctx.getResponse<Response>();
    const requestId = req.id === undefined ? undefined : String(req.id);
    const { problem: p, retryAfterSeconds } = this.toProblem(exception, requestId);
    const retryAfter = retryAfterSeconds ?? (p.status === 503 ? DEPENDENCY_RETRY_AFTER_S : undefined);
    if (retryAfter !== undefined) res.setHeader('Retry-After', String(retryAfter));
    p.instance = req.originalUrl.split('?')[0];
    if (requestId !== undefined) p.requestId = requestId;
    res.status(p.status).type('application/problem+json').send(JSON.stringify(p));
  }

  private toProblem(exception: unknown, requestId: string | undefined): { problem: Problem; retryAfterSeconds?: number } {
    if (exception instanceof SigilError) return fromSigilError(exception);
    // A busy or briefly gone dependency is the client's cue to retry (as the agent API's
    // UNAVAILABLE 'busy'), not a server bug: 503 with Retry-After, and a warning, not an error.
    const dependency = asDependencyError(exception);
    if (dependency) {
      this.logger.warn({ err: summary(exception), requestId, code: dependency.code }, 'dependency busy or unavailable');
      return fromSigilError(dependency);
    }
    return { problem: this.otherProblem(exception, requestId) };
  }

  private otherProblem(exception: unknown, requestId: string | undefined): Problem {
    // Body-parser errors arrive raw or wrapped by Nest (as `cause`); their messages can quote the
    // body (V8's JSON.parse does), so only our fixed text is returned.
    const parser = (exception as { type?: unknown }).type ?? (exception as { cause?: { type?: unknown } }).cause?.type;
    if (typeof parser === 'string' && BODY_PARSER[parser]) {
      const b = BODY_PARSER[parser];
      return problem(b.status, b.code, b.detail);
    }
    // A last line of defence for races the services do not foresee: PostgreSQL's verdict on the
    // input, as a 4xx, never its message (it can quote values).
    const code = sqlState(exception);
    if (code && DATABASE_CODES[code]) return problem(...DATABASE_CODES[code]);
    if (exception instanceof HttpException && exception.getStatus() < 500) {
      const status = exception.getStatus();
      const body = exception.getResponse();
      if ((exception as { cause?: unknown }).cause instanceof Error) return problem(status, CODES[status] ?? 'client_error'); // never echo a low-level message
      const detail = typeof body === 'string' ? body : describeBody(body);
      return problem(status, CODES[status] ?? 'client_error', detail);
    }
    const status = exception instanceof HttpException ? exception.getStatus() : 500;
    this.logger.error({ err: exception, requestId }, 'request failed');
    return problem(status, status === 503 ? 'unavailable' : 'internal', 'Internal error; quote the request id to the operators.');
  }
}

/** A SigilError (every feature's, key custody's, a dependency's) by its kind; never anything but its own message. */
export function fromSigilError(e: SigilError): { problem: Problem; retryAfterSeconds?: number } {
  return {
    problem: {
      ...problem(HTTP_STATUS[e.kind], e.code, e.message),
      ...(e.reason !== undefined ? { reason: e.reason } : {}),
      ...(e.details ? { errors: e.details } : {}),
    },
    ...(e.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: e.retryAfterSeconds }),
  };
}

/** Message and code only: a driver error carries the query's parameters. */
function summary(err: unknown): { message: string; code?: unknown; ckr?: unknown } {
  const e = err as Error & { code?: unknown; ckr?: unknown; driverError?: { code?: unknown } };
  return { message: e.message, code: e.code ?? e.driverError?.code, ckr: e.ckr };
}

function describeBody(body: object): string | undefined {
  const message = (body as { message?: unknown }).message;
  if (Array.isArray(message)) return message.map(String).join('; ');
  return typeof message === 'string' ? message : undefined;
}
