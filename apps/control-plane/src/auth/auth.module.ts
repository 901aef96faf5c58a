import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { ApiTokenRepository } from './api-token.repository.js';
import { AuthGuard } from './auth.guard.js';
import { ConsoleSessionRepository } from './console-session.repository.js';
import { FailedAuthentications } from './failed-authentications.js';

/**
 * API tokens (the api_tokens table), console sessions (console_sessions, signed in with a token)
 * and the guard every REST request passes. Not global: the
 * guard is registered app-wide through APP_GUARD; modules that manage tokens import this one.
 */
@Module({
  providers: [ApiTokenRepository, ConsoleSessionRepository, FailedAuthentications, { provide: APP_GUARD, useClass: AuthGuard }],
  exports: [ApiTokenRepository, ConsoleSessionRepository, FailedAuthentications],
})
export class AuthModule {}
