import { randomBytes } from 'node:crypto';
import { Body, Controller, Delete, Get, HttpCode, Inject, Post, Req, Res } from '@nestjs/common';
import {
  ApiCookieAuth,
  ApiCreatedResponse,
  ApiNoContentResponse,
  ApiOkResponse,
  ApiOperation,
  ApiProperty,
  ApiPropertyOptional,
  ApiTags,
} from '@nestjs/swagger';
import { IsString, Matches } from 'class-validator';
import type { Request, Response } from 'express';
import { ApiProblems } from '../common/api-problems.js';
import { Public } from '../common/public-route.js';
import { RuntimeConfig } from '../config/runtime-config.js';
import { AuditError, AuditErrorCode } from '../audit/audit.errors.js';
import { AuditService } from '../audit/audit.service.js';
import { ApiTokenRepository } from '../auth/api-token.repository.js';
import type { ApiTokenRole } from '../auth/api-token.entity.js';
import { Audited, Requires, type AuthenticatedRequest } from '../auth/auth.decorators.js';
import { AuthError, AuthErrorCode } from '../auth/auth.errors.js';
import { hashToken } from '../auth/bootstrap-admin-token.js';
import { CSRF_HEADER, SESSION_COOKIE, clearedSessionCookies, sessionCookies, sessionSecret } from '../auth/console-cookie.js';
import { FailedAuthentications } from '../auth/failed-authentications.js';
import { ConsoleSessionRepository, type ConsoleSession } from '../auth/console-session.repository.js';
import { Actor, ROLE_PERMISSIONS, type Permission } from '../auth/policy.js';
import { RateLimiter } from '../common/rate-limiter.js';

export class SignInDto {
  @ApiProperty({ description: 'an API token; exchanged for the session cookie and never stored by the browser' })
  @IsString()
  @Matches(/^[A-Za-z0-9_\-.~+/=]{16,512}$/, { message: 'token must be an API token' })
  token!: string;
}

export class ConsoleActorView {
  @ApiProperty({ example: 'alice' }) name!: string;
  @ApiProperty({ enum: ['admin', 'operator', 'pipeline', 'viewer'] }) role!: ApiTokenRole;
  @ApiPropertyOptional({ nullable: true, type: String, description: 'the project the token is scoped to, or null for all' })
  projectId!: string | null;
  @ApiProperty({ type: [String], description: 'what the role may do; the console shows only the controls these allow' })
  permissions!: Permission[];
}

export class ConsoleSessionView {
  @ApiProperty({ description: `send it as ${CSRF_HEADER} on every POST, PUT, PATCH and DELETE made with the session` })
  csrfToken!: string;
  @ApiProperty({ description: 'the session ends then at the latest' }) expiresAt!: Date;
  @ApiProperty({ description: 'the session ends after this long without a request' }) idleTimeoutSeconds!: number;
  @ApiProperty({ type: ConsoleActorView }) actor!: ConsoleActorView;
}

const view = (s: Pick<ConsoleSession, 'csrfToken' | 'expiresAt'>, actor: Actor, idleTimeoutSeconds: number): ConsoleSessionView => ({
  csrfToken: s.csrfToken,
  expiresAt: s.expiresAt,
  idleTimeoutSeconds,
  actor: { name: actor.name, role: actor.role, projectId: actor.projectId, permissions: [...ROLE_PERMISSIONS[actor.role]] },
});

/**
 * Console sign-in and sign-out (decision 021). The browser posts an API token once and gets an
 * HttpOnly, SameSite=Strict session cookie; the token is not kept in the browser. Sign-out ends
 * the session at the server.
 */
@ApiTags('console')
@ApiProblems()
@Controller('console/session')
export class ConsoleSessionsController {
  /** Sign-ins per token (each makes a row): 10 at once, then one a second. */
  private readonly signIns = new RateLimiter(1, 10);

  constructor(
    @Inject(ApiTokenRepository) private readonly tokens: ApiTokenRepository,
    @Inject(ConsoleSessionRepository) private readonly sessions: ConsoleSessionRepository,
    @Inject(RuntimeConfig) private readonly config: RuntimeConfig,
    @Inject(FailedAuthentications) private readonly failures: FailedAuthentications,
    @Inject(AuditService) private readonly audit: AuditService,
  ) {}

  @Post()
  @Public()
  @ApiOperation({
    summary:
      'Sign in to the console with an API token: sets the session cookie (HttpOnly, Secure, SameSite=Strict) and returns the CSRF token. ' +
      '401 unauthenticated for an unknown or revoked token; 403 csrf_failed for a request from another origin',
  })
  @ApiCreatedResponse({ type: ConsoleSessionView })
  async signIn(@Body() dto: SignInDto, @Req() req: Request & AuthenticatedRequest, @Res({ passthrough: true }) res: Response) {
    req.auditAction = 'console.sign_in'; // a failure is counted with the other failed authentications
    // JSON bodies only (a cross-site form cannot send one without CORS, which Sigil never allows);
    // an Origin that is not this host is refused too.
    const origin = req.headers.origin;
    if (origin !== undefined && !sameOrigin(origin, req.headers.host))
      throw new AuthError(AuthErrorCode.CsrfFailed, 'sign-in must come from the console’s own origin');
    const address = req.ip ?? 'unknown';
    const token = await this.tokens.findActiveByHash(hashToken(dto.token));
    if (!token) {
      const wait = this.failures.failed(address);
      if (wait > 0) {
        res.setHeader('Retry-After', String(wait));
        throw new AuthError(AuthErrorCode.RateLimited, `too many failed sign-ins; retry in ${wait} s`);
      }
      throw new AuthError(AuthErrorCode.Unauthenticated, 'the API token is unknown or revoked');
    }
    const wait = this.signIns.take(token.id);
    if (wait > 0) {
      res.setHeader('Retry-After', String(wait));
      throw new AuthError(AuthErrorCode.RateLimited, `too many sign-ins with this token; retry in ${wait} s`);
    }
    const c = this.config.console;
    await this.sessions.deleteEnded(c.sessionIdleSeconds);
    const secret = randomBytes(32).toString('base64url');
    const csrfToken = randomBytes(32).toString('base64url');
    // As for every change: the attempt is on record before the session exists, or nothing happens
    // (the guard's interceptor cannot do it for this public route; the outcome is recorded as usual).
    try {
      await this.audit.record({
        at: new Date(),
        actorId: token.id,
        actorName: token.name,
        action: 'console.sign_in',
        method: 'POST',
        path: '/api/v1/console/session',
        target: null,
        outcome: 'attempted',
        status: 0,
        requestId: typeof req.id === 'string' || typeof req.id === 'number' ? String(req.id) : null,
      });
    } catch {
      throw new AuditError(AuditErrorCode.AuditUnavailable, 'the audit log cannot be written; no session was created');
    }
    // Signing in again in the same browser ends the session it had (no row left behind).
    const previous = sessionSecret(req.headers.cookie);
    if (previous) await this.sessions.deleteBySecret(hashToken(previous));
    const created = await this.sessions.insert({
      tokenId: token.id,
      secretHash: hashToken(secret),
      csrfToken,
      maxSeconds: c.sessionMaxSeconds,
    });
    const actor = new Actor(token.id, token.name, token.role, token.projectId);
    // Audited as the token's own action (the guard skipped this public route).
    req.actor = actor;
    res.setHeader('Set-Cookie', sessionCookies(secret, c.sessionMaxSeconds));
    res.setHeader('Cache-Control', 'no-store');
    return view({ csrfToken, expiresAt: created.expiresAt }, actor, c.sessionIdleSeconds);
  }

  @Get()
  @ApiCookieAuth(SESSION_COOKIE)
  // Any signed-in role (every role reads projects).
  @Requires('projects:read')
  @ApiOperation({
    summary: 'The current console session (after a reload): who is signed in, and the CSRF token. 401 without a live session',
  })
  @ApiOkResponse({ type: ConsoleSessionView })
  current(@Req() req: Request & AuthenticatedRequest, @Res({ passthrough: true }) res: Response): ConsoleSessionView {
    const s = req.consoleSession;
    if (!s) throw new AuthError(AuthErrorCode.Unauthenticated, 'no console session: sign in at POST /api/v1/console/session');
    res.setHeader('Cache-Control', 'no-store');
    return view(s, req.actor!, this.config.console.sessionIdleSeconds);
  }

  @Delete()
  @ApiCookieAuth(SESSION_COOKIE)
  @HttpCode(204)
  @Requires('projects:read')
  @Audited('console.sign_out')
  @ApiOperation({ summary: `Sign out: the session ends at the server and the cookie is cleared (needs ${CSRF_HEADER})` })
  @ApiNoContentResponse()
  async signOut(@Req() req: Request & AuthenticatedRequest, @Res({ passthrough: true }) res: Response): Promise<void> {
    const s = req.consoleSession;
    if (!s) throw new AuthError(AuthErrorCode.Unauthenticated, 'no console session to sign out of');
    await this.sessions.delete(s.id);
    res.setHeader('Set-Cookie', clearedSessionCookies());
  }
}

function sameOrigin(origin: string, host: string | undefined): boolean {
  try {
    return host !== undefined && new URL(origin).host === host;
  } catch {
    return false;
  }
}
