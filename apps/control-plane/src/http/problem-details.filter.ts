import { ArgumentsHost, Catch, HttpException, HttpStatus, type ExceptionFilter } from '@nestjs/common';
import type { Request, Response } from 'express';
import type { PinoLogger } from 'nestjs-pino';

/** RFC 9457 problem details; `code` is the stable, machine-readable part. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  code: string;
  detail?: string;
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

/**
 * Maps everything thrown out of a request to `application/problem+json`. Unexpected
 * errors become a generic 500 carrying only the request id: never a stack trace or a
 * message that could contain data.
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
    let problem: Problem;
    if (exception instanceof HttpException && exception.getStatus() < 500) {
      const status = exception.getStatus();
      const body = exception.getResponse();
      const detail = typeof body === 'string' ? body : describeBody(body);
      problem = {
        type: 'about:blank',
        title: HttpStatus[status]?.replace(/_/g, ' ').toLowerCase() ?? 'error',
        status,
        code:
          (typeof body === 'object' && body !== null && 'code' in body ? String(body.code) : undefined) ?? CODES[status] ?? 'client_error',
        ...(detail ? { detail } : {}),
      };
    } else {
      const status = exception instanceof HttpException ? exception.getStatus() : 500;
      this.logger.error({ err: exception, requestId }, 'request failed');
      problem = {
        type: 'about:blank',
        title: 'internal error',
        status,
        code: 'internal',
        detail: 'Internal error; quote the request id to the operators.',
      };
    }
    problem.instance = req.originalUrl.split('?')[0];
    if (requestId !== undefined) problem.requestId = requestId;
    res.status(problem.status).type('application/problem+json').send(JSON.stringify(problem));
  }
}

function describeBody(body: object): string | undefined {
  const message = (body as { message?: unknown }).message;
  if (Array.isArray(message)) return message.map(String).join('; ');
  return typeof message === 'string' ? message : undefined;
}
