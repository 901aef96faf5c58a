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
import type { ApiTokenRole } from './api-token.entity.js';
import { RateLimiter } from '../common/rate-limiter.js';
import { timingSafeEqual } from 'node:crypto';
import { CSRF_HEADER, clearedSessionCookies, holdsConsoleCookies, sessionSecret } from './console-cookie.js';
import { ConsoleSessionRepository } from './console-session.repository.js';
import { FailedAuthentications } from './failed-authentications.js';

/** Methods that change something: made with the session cookie, they must carry the CSRF token. */
const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** A console session's last-seen time is written at most this often (not on every request). */
const TOUCH_AFTER_SECONDS = 30;

/**
 * Every request: a bearer API token (stored only as SHA-256), or the console's session cookie
 * (decision 021: the session's CSRF token on every mutation), a per-token rate limit, and the
 * route's permission for the token's role. Routes without @Public() or @Requires() are refused
 * (fail closed).
 */
@Injectable()
export class AuthGuard implements CanActivate {
  private readonly limiter: RateLimiter;

  constructor(
    @Inject(Reflector) private readonly reflector: Reflector,
    @Inject(ApiTokenRepository) private readonly tokens: ApiTokenRepository,
    @Inject(ConsoleSessionRepository) private readonly sessions: ConsoleSessionRepository,
    @Inject(RuntimeConfig) private readonly config: RuntimeConfig,
    @Inject(FailedAuthentications) private readonly failures: FailedAuthentications,
  ) {
    this.limiter = new RateLimiter(config.rateLimit.perSecond, config.rateLimit.burst);
  }

  async canActivate(ctx: ExecutionContext): Promise<boolean> {
    if (ctx.getType() !== 'http') return false; // other transports (gRPC) authenticate on their own; never by default
    const targets = [ctx.getHandler(), ctx.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC, targets)) return true;
    const req = ctx.switchToHttp().getRequest<AuthenticatedRequest & { method: string; headers: Record<string, string | undefined> }>();
    req.auditAction = this.reflector.getAllAndOverride<string>(AUDIT_ACTION, targets);

    const address = (req as { ip?: string }).ip ?? 'unknown';
    const header = req.headers.authorization ?? '';
    const match = /^Bearer ([A-Za-z0-9_\-.~+/=]{16,512})$/.exec(header);
    const secret = header === '' ? sessionSecret(req.headers.cookie) : undefined;
    const token = match ? await this.tokens.findActiveByHash(hashToken(match[1]!)) : secret ? await this.sessionToken(req, secret) : null;
    if (!token) {
      const wait = this.failures.failed(address);
      if (wait > 0) {
        ctx.switchToHttp().getResponse<Response>().setHeader('Retry-After', String(wait));
        throw new AuthError(AuthErrorCode.RateLimited, `too many failed authentications; retry in ${wait} s`);
      }
      if (header === '' && holdsConsoleCookies(req.headers.cookie))
        ctx.switchToHttp().getResponse<Response>().setHeader('Set-Cookie', clearedSessionCookies());
      throw new AuthError(
        AuthErrorCode.Unauthenticated,
        match
          ? 'the API token is unknown or revoked'
          : secret
            ? 'the console session has ended (signed out, expired, idle too long, or its token revoked); sign in again'
            : 'an API token is required: Authorization: Bearer <token>',
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

  /**
   * The token behind a live console session, or null. A mutation must carry the session's CSRF
   * token in X-CSRF-Token (403 csrf_failed): SameSite=Strict already keeps other sites' pages
   * from sending the cookie, and the token holds where SameSite does not (an old browser, a
   * sibling subdomain's page).
   */
  private async sessionToken(
    req: AuthenticatedRequest & { method: string; headers: Record<string, string | undefined> },
    secret: string,
  ): Promise<{ id: string; name: string; role: ApiTokenRole; projectId: string | null } | null> {
    const c = this.config.console;
    const session = await this.sessions.findLive(hashToken(secret), c.sessionIdleSeconds, TOUCH_AFTER_SECONDS);
    if (!session) return null;
    if (UNSAFE.has(req.method)) {
      const sent = Buffer.from(req.headers[CSRF_HEADER] ?? '');
      const expected = Buffer.from(session.csrfToken);
      if (sent.length !== expected.length || !timingSafeEqual(sent, expected)) {
        req.actor = new Actor(session.tokenId, session.tokenName, session.role, session.projectId); // audited as denied
        throw new AuthError(AuthErrorCode.CsrfFailed, `a change made with the console session needs its CSRF token in ${CSRF_HEADER}`);
      }
    }
    req.consoleSession = session;
    return { id: session.tokenId, name: session.tokenName, role: session.role, projectId: session.projectId };
  }
}
