import { Inject, Injectable, type NestMiddleware } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';
import { PinoLogger } from 'nestjs-pino';
import type { AuthenticatedRequest } from '../auth/auth.decorators.js';
import { AuditService } from './audit.service.js';

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** Route parameters that name what a call acts on; never bodies, never query strings. */
const TARGET_PARAMS = ['project', 'app', 'secret', 'cluster', 'id'];

/**
 * Records every mutating API call once its response is sent: who, what, on which target,
 * with which outcome (success, denied, failed) and status, under the request id.
 */
@Injectable()
export class AuditMiddleware implements NestMiddleware {
  constructor(
    @Inject(AuditService) private readonly audit: AuditService,
    @Inject(PinoLogger) private readonly logger: PinoLogger,
  ) {
    logger.setContext('audit');
  }

  use(req: Request & AuthenticatedRequest, res: Response, next: NextFunction): void {
    if (!MUTATING.has(req.method)) return next();
    const path = req.originalUrl.split('?')[0] ?? '';
    // 'close' also fires when the client hangs up before the response is finished ('finish' would not).
    res.once('close', () => {
      // Only routed API calls: the guard names the action (unknown paths are not API calls).
      if (!req.auditAction) return;
      const params = req.params as Record<string, string | undefined>;
      const clean = (v: string) => v.replace(/\0/g, '\\0').slice(0, 256);
      const target =
        TARGET_PARAMS.filter((p) => params[p] !== undefined)
          .map((p) => `${p}=${clean(params[p]!)}`)
          .join(' ') || null;
      const status = res.writableFinished ? res.statusCode : 499; // 499: the client went away first
      this.audit
        .record({
          at: new Date(),
          actorId: req.actor?.tokenId ?? null,
          actorName: req.actor?.name ?? null,
          action: req.auditAction,
          method: req.method,
          path: clean(path),
          target,
          projectName: params.project?.includes('\0') ? undefined : params.project,
          outcome: status < 400 ? 'success' : status === 401 || status === 403 ? 'denied' : 'failed',
          status,
          requestId: typeof req.id === 'string' || typeof req.id === 'number' ? String(req.id) : null,
        })
        .catch((err: unknown) => this.logger.error({ err, action: req.auditAction, path }, 'could not write the audit record'));
    });
    next();
  }
}
