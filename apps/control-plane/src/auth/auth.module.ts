import { Global, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { ProjectsModule } from '../projects/projects.module.js';
import { ApiTokenRepository } from './api-token.repository.js';
import { ApiTokensController } from './api-tokens.controller.js';
import { AuthGuard } from './auth.guard.js';

@Global()
@Module({
  imports: [ProjectsModule],
  providers: [ApiTokenRepository, { provide: APP_GUARD, useClass: AuthGuard }],
  controllers: [ApiTokensController],
  exports: [ApiTokenRepository],
})
export class AuthModule {}
