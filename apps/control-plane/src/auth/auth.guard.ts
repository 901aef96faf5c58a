import { Inject, Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Response } from 'express';
import { RuntimeConfig } from '../config/runtime-config.js';
import { AuthError, AuthErrorCode } from './auth.errors.js';
import { ApiTokenRepository } from './api-token.repository.js';
import { PUBLIC } from '../common/public-route.js';
import { AUDIT_ACTION, REQUIRES, type AuthenticatedRequest } from './auth.decorators.js';
import { hashToken } from './bootstrap-admin-token.js';
import { Actor, type Permission } from './policy.js';
import { RateLimiter } from '../common/rate-limiter.js';

/**
 * Every request: a bearer API token (stored only as SHA-256), a per-token rate limit, and the
 * route's permission for the token's role. Routes without @Public() or @Requires() are refused
 * (fail closed).
 */
@Injectable()
export class AuthGuard implements CanActivate {
  private readonly limiter: RateLimiter;
  /** Failed authentications per client address: bounds brute force (their audit records are aggregated: FailedAttempts). */
  private readonly failures = new RateLimiter(5, 20);

  constructor(
    @Inject(Reflector) private readonly reflector: Reflector,
    @Inject(ApiTokenRepository) private readonly tokens: ApiTokenRepository,
    @Inject(RuntimeConfig) config: RuntimeConfig,
  ) {
    this.limiter = new RateLimiter(config.rateLimit.perSecond, config.rateLimit.burst);
  }

  async canActivate(ctx: ExecutionContext): Promise<boolean> {
    if (ctx.getType() !== 'http') return false; // other transports (gRPC) authenticate on their own; never by default
    const targets = [ctx.getHandler(), ctx.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC, targets)) return true;
    const req = ctx.switchToHttp().getRequest<AuthenticatedRequest & { headers: Record<string, string | undefined> }>();
    req.auditAction = this.reflector.getAllAndOverride<string>(AUDIT_ACTION, targets);

    const header = req.headers.authorization ?? '';
    const match = /^Bearer ([A-Za-z0-9_\-.~+/=]{16,512})$/.exec(header);
    const token = match ? await this.tokens.findActiveByHash(hashToken(match[1]!)) : null;
    if (!token) {
      const wait = this.failures.take((req as { ip?: string }).ip ?? 'unknown');
      if (wait > 0) {
        ctx.switchToHttp().getResponse<Response>().setHeader('Retry-After', String(wait));
        throw new AuthError(AuthErrorCode.RateLimited, `too many failed authentications; retry in ${wait} s`);
      }
      throw new AuthError(
        AuthErrorCode.Unauthenticated,
        match ? 'the API token is unknown or revoked' : 'an API token is required: Authorization: Bearer <token>',
      );
    }
    req.actor = new Actor(token.id, token.name, token.role, token.projectId);

    const wait = this.limiter.take(token.id);
    if (wait > 0) {
      ctx.switchToHttp().getResponse<Response>().setHeader('Retry-After', String(wait));
      throw new AuthError(AuthErrorCode.RateLimited, `too many requests for this token; retry in ${wait} s`);
    }

    const permission = this.reflector.getAllAndOverride<Permission>(REQUIRES, targets);
    if (!permission) throw new AuthError(AuthErrorCode.Forbidden, 'this route declares no permission');
    if (!req.actor.can(permission))
      throw new AuthError(AuthErrorCode.Forbidden, `role ${token.role} may not ${permission.replace(':', ' ')}`);
    return true;
  }
}
