import { Inject, Injectable, type CallHandler, type ExecutionContext, type NestInterceptor, type NestMiddleware } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';
import { PinoLogger } from 'nestjs-pino';
import type { Observable } from 'rxjs';
import type { AuthenticatedRequest } from '../auth/auth.decorators.js';
import { DependencyError, DependencyErrorCode } from '../common/dependency.errors.js';
import { isHsmUnavailableError } from '../common/transient-errors.js';
import { AuditError, AuditErrorCode } from './audit.errors.js';
import type { AuditRecord } from './audit.repository.js';
import { AuditService } from './audit.service.js';
import { FailedAttempts } from './failed-attempts.js';

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** Route parameters that name what a call acts on; never bodies, never query strings. */
const TARGET_PARAMS = ['project', 'app', 'secret', 'cluster', 'id', 'version'];

/** Characters of a handler's audit detail kept at most. */
const MAX_DETAIL = 4096;

type AuditedRequest = Request & AuthenticatedRequest;

/** What the audit log says about a request: who, what, on which target (ids and names only). */
function recordFor(req: AuditedRequest, outcome: AuditRecord['outcome'], status: number): Parameters<AuditService['record']>[0] {
  const params = req.params as Record<string, string | undefined>;
  const clean = (v: string) => v.replace(/\0/g, '\\0').slice(0, 256);
  const target =
    [
      ...TARGET_PARAMS.filter((p) => params[p] !== undefined).map((p) => `${p}=${clean(params[p]!)}`),
      // Set by the handler, so only on the outcome record (the attempted one is written before it runs).
      ...(req.auditDetail ? [req.auditDetail.replace(/\0/g, '\\0').slice(0, MAX_DETAIL)] : []),
    ].join(' ') || null;
  return {
    at: new Date(),
    actorId: req.actor?.tokenId ?? null,
    actorName: req.actor?.name ?? null,
    action: req.auditAction!,
    method: req.method,
    path: clean(req.originalUrl.split('?')[0] ?? ''),
    target,
    projectName: params.project?.includes('\0') ? undefined : params.project,
    outcome,
    status,
    requestId: typeof req.id === 'string' || typeof req.id === 'number' ? String(req.id) : null,
  };
}

/**
 * Before an authorised mutation runs, an `attempted` record is written — if that fails, the
 * mutation does not happen (503). So nothing changes without a trace, even if the process dies
 * before the outcome is recorded.
 */
@Injectable()
export class AuditInterceptor implements NestInterceptor {
  constructor(@Inject(AuditService) private readonly audit: AuditService) {}

  async intercept(ctx: ExecutionContext, next: CallHandler): Promise<Observable<unknown>> {
    const req = ctx.switchToHttp().getRequest<AuditedRequest>();
    if (ctx.getType() === 'http' && MUTATING.has(req.method) && req.auditAction && req.actor) {
      try {
        await this.audit.record(recordFor(req, 'attempted', 0));
      } catch (err) {
        // The chain is MACed in the HSM: an HSM outage shows here first, and is named as such.
        if (isHsmUnavailableError(err))
          throw new DependencyError(
            DependencyErrorCode.HsmUnavailable,
            'the HSM is unavailable, so the audit log cannot be written; nothing was changed',
          );
        throw new AuditError(AuditErrorCode.AuditUnavailable, 'the audit log cannot be written; nothing was changed');
      }
    }
    return next.handle();
  }
}

/**
 * Records the outcome of every routed mutating call once the response is done (or the client
 * went away): success, denied (401/403) or failed, with the status, under the request id.
 * Calls without valid credentials are counted per window instead (FailedAttempts).
 */
@Injectable()
export class AuditMiddleware implements NestMiddleware {
  constructor(
    @Inject(AuditService) private readonly audit: AuditService,
    @Inject(FailedAttempts) private readonly failedAttempts: FailedAttempts,
    @Inject(PinoLogger) private readonly logger: PinoLogger,
  ) {
    logger.setContext('audit');
  }

  use(req: AuditedRequest, res: Response, next: NextFunction): void {
    if (!MUTATING.has(req.method)) return next();
    // 'close' also fires when the client hangs up before the response is finished ('finish' would not).
    res.once('close', () => {
      // Only routed API calls: the guard names the action (unknown paths are not API calls).
      if (!req.auditAction) return;
      const status = res.writableFinished ? res.statusCode : 499; // 499: the client went away first
      if (!req.actor) {
        const route = (req.route as { path?: string } | undefined)?.path;
        this.failedAttempts.note({
          action: req.auditAction,
          method: req.method,
          path: route ? `${req.baseUrl}${route}` : 'unmatched',
          status,
          source: req.ip ?? req.socket.remoteAddress ?? 'unknown',
        });
        return;
      }
      const outcome = status < 400 ? 'success' : status === 401 || status === 403 ? 'denied' : 'failed';
      this.audit
        .record(recordFor(req, outcome, status))
        .catch((err: unknown) => this.logger.error({ err, action: req.auditAction }, 'could not write the audit record'));
    });
    next();
  }
}
