import { Body, Controller, Delete, Get, HttpCode, Inject, Param, ParseUUIDPipe, Post, Res } from '@nestjs/common';
import { ApiProblems } from '../common/api-problems.js';
import { ApiBearerAuth, ApiCreatedResponse, ApiOkResponse, ApiOperation, ApiProperty, ApiPropertyOptional, ApiTags } from '@nestjs/swagger';
import { IsIn, IsString, Length, Matches } from 'class-validator';
import type { Response } from 'express';
import { AuthError, AuthErrorCode } from '../auth/auth.errors.js';
import { IsAbsentOr, IsDns1123Label } from '../common/validators.js';
import { ProjectsService } from '../projects/projects.service.js';
import { ApiTokenRepository } from '../auth/api-token.repository.js';
import type { ApiTokenEntity, ApiTokenRole } from '../auth/api-token.entity.js';
import { Audited, CurrentActor, Requires } from '../auth/auth.decorators.js';
import { generateToken, hashToken } from '../auth/bootstrap-admin-token.js';
import type { Actor } from '../auth/policy.js';

const ROLES: ApiTokenRole[] = ['admin', 'operator', 'pipeline', 'viewer'];

export class CreateApiTokenDto {
  @ApiProperty({ example: 'ci-payments', description: 'names starting with `system:` are Sigil’s own actors (e.g. system:rotation)' })
  @IsString()
  @Length(1, 100)
  // What a token does is recorded under its name: none may pass for Sigil's own actors.
  @Matches(/^(?!system:)/, { message: 'name must not start with system: (reserved for Sigil’s own actors)' })
  name!: string;

  @ApiProperty({ enum: ROLES, example: 'pipeline' })
  @IsIn(ROLES)
  role!: ApiTokenRole;

  @ApiPropertyOptional({ example: 'payments', description: 'restrict the token to one project (not for admin tokens)' })
  @IsAbsentOr()
  @IsDns1123Label()
  project?: string;
}

export class ApiTokenView {
  @ApiProperty() id!: string;
  @ApiProperty({ example: 'ci-payments' }) name!: string;
  @ApiProperty({ enum: ROLES }) role!: ApiTokenRole;
  @ApiProperty({ nullable: true, type: String, description: 'project id, or null for all projects' }) projectId!: string | null;
  @ApiProperty() createdAt!: Date;
  @ApiProperty({ nullable: true, type: Date }) revokedAt!: Date | null;

  static of(t: ApiTokenEntity): ApiTokenView {
    return { id: t.id, name: t.name, role: t.role, projectId: t.projectId, createdAt: t.createdAt, revokedAt: t.revokedAt };
  }
}

export class CreatedApiTokenView extends ApiTokenView {
  @ApiProperty({ example: 'sgl_…', description: 'shown once; only its SHA-256 is stored' }) token!: string;
}

@ApiTags('tokens')
@ApiBearerAuth()
@ApiProblems()
@Controller('tokens')
export class ApiTokensController {
  constructor(
    @Inject(ApiTokenRepository) private readonly tokens: ApiTokenRepository,
    @Inject(ProjectsService) private readonly projects: ProjectsService,
  ) {}

  @Post()
  @Requires('tokens:manage')
  @Audited('token.create')
  @ApiOperation({ summary: 'Create an API token (admin); the token is shown once' })
  @ApiCreatedResponse({ type: CreatedApiTokenView })
  async create(
    @CurrentActor() actor: Actor,
    @Body() dto: CreateApiTokenDto,
    @Res({ passthrough: true }) res: Response,
  ): Promise<CreatedApiTokenView> {
    if (dto.role === 'admin' && dto.project !== undefined)
      throw new AuthError(AuthErrorCode.AdminTokenScoped, 'admin tokens cannot be limited to a project');
    const projectId = dto.project === undefined ? null : (await this.projects.resolve(actor, dto.project)).id;
    const token = generateToken();
    const saved = await this.tokens.insert({ name: dto.name, role: dto.role, projectId, tokenHash: hashToken(token) });
    res.setHeader('Cache-Control', 'no-store');
    return { ...ApiTokenView.of(saved), token };
  }

  @Get()
  @Requires('tokens:manage')
  @ApiOkResponse({ type: [ApiTokenView] })
  async list(): Promise<ApiTokenView[]> {
    return (await this.tokens.list()).map((t) => ApiTokenView.of(t));
  }

  @Delete(':id')
  @HttpCode(204)
  @Requires('tokens:manage')
  @Audited('token.revoke')
  @ApiOperation({ summary: 'Revoke a token; it stops working at once' })
  async revoke(@Param('id', new ParseUUIDPipe()) id: string): Promise<void> {
    if (!(await this.tokens.revoke(id))) throw new AuthError(AuthErrorCode.TokenNotFound, 'active token not found');
  }
}
