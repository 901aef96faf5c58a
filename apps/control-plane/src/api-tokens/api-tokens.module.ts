import { Module } from '@nestjs/common';
import { AuthModule } from '../auth/auth.module.js';
import { ProjectsModule } from '../projects/projects.module.js';
import { ApiTokensController } from './api-tokens.controller.js';

/**
 * The token administration API (`/tokens`). Apart from auth/, which owns the api_tokens table
 * and checks tokens on every request, because creating a project-scoped token resolves the
 * project: auth itself must not depend on projects (projects depends on auth's decorators).
 */
@Module({ imports: [AuthModule, ProjectsModule], controllers: [ApiTokensController] })
export class ApiTokensModule {}
