import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { ApiTokenRepository } from './api-token.repository.js';
import { AuthGuard } from './auth.guard.js';

/**
 * API tokens (the api_tokens table) and the guard every REST request passes. Not global: the
 * guard is registered app-wide through APP_GUARD; modules that manage tokens import this one.
 */
@Module({
  providers: [ApiTokenRepository, { provide: APP_GUARD, useClass: AuthGuard }],
  exports: [ApiTokenRepository],
})
export class AuthModule {}
