import { Body, Controller, Delete, Get, Headers, HttpCode, Inject, Param, Patch, Post, Query, Res } from '@nestjs/common';
import { ApiProblems } from '../common/api-problems.js';
import { ApiBearerAuth, ApiCreatedResponse, ApiOkResponse, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { AuditDetail, Audited, CurrentActor, Requires, type AuditDetailSetter } from '../auth/auth.decorators.js';
import type { Actor } from '../auth/policy.js';
import { afterCursor, ifMatchVersion, pageLimit, setEtag } from '../common/http.js';
import { AppPage, AppView, CreateAppDto, UpdateAppDto } from './apps.dto.js';
import { AppsService } from './apps.service.js';
import type { AppEntity } from './app.entity.js';

@ApiTags('apps')
@ApiBearerAuth()
@ApiProblems()
@Controller('projects/:project/apps')
export class AppsController {
  constructor(@Inject(AppsService) private readonly apps: AppsService) {}

  @Post()
  @Requires('apps:write')
  @Audited('app.create')
  @ApiOperation({ summary: 'Create an app in a project' })
  @ApiCreatedResponse({ type: AppView })
  async create(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Body() dto: CreateAppDto,
    @Res({ passthrough: true }) res: Response,
    @AuditDetail() audit: AuditDetailSetter,
  ): Promise<AppView> {
    const r = await this.apps.create(actor, project, dto);
    audit(`app=${r.app.name} ${auditSettings(r.app)}`);
    setEtag(res, r.app.version);
    return AppView.of(r.app, r.project.name);
  }

  @Get()
  @Requires('apps:read')
  @ApiQuery({ name: 'limit', required: false })
  @ApiQuery({ name: 'after', required: false })
  @ApiOkResponse({ type: AppPage })
  async list(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Query('limit') limit?: string,
    @Query('after') after?: string,
  ): Promise<AppPage> {
    const r = await this.apps.list(actor, project, afterCursor(after), pageLimit(limit));
    return { items: r.page.items.map((a) => AppView.of(a, r.project.name)), next: r.page.next };
  }

  @Get(':app')
  @Requires('apps:read')
  @ApiOkResponse({ type: AppView })
  async get(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('app') name: string,
    @Res({ passthrough: true }) res: Response,
  ): Promise<AppView> {
    const r = await this.apps.resolve(actor, project, name);
    setEtag(res, r.app.version);
    return AppView.of(r.app, r.project.name);
  }

  @Patch(':app')
  @Requires('apps:write')
  @Audited('app.update')
  @ApiOkResponse({ type: AppView })
  async update(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('app') name: string,
    @Body() dto: UpdateAppDto,
    @Headers('if-match') ifMatch: string | undefined,
    @Res({ passthrough: true }) res: Response,
    @AuditDetail() audit: AuditDetailSetter,
  ): Promise<AppView> {
    const r = await this.apps.update(actor, project, name, dto, ifMatchVersion(ifMatch));
    audit(auditSettings(r.app));
    setEtag(res, r.app.version);
    return AppView.of(r.app, r.project.name);
  }

  @Delete(':app')
  @HttpCode(204)
  @Requires('apps:write')
  @Audited('app.delete')
  @ApiOperation({ summary: 'Delete an app and its secrets' })
  async delete(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('app') name: string,
    @Headers('if-match') ifMatch: string | undefined,
  ): Promise<void> {
    await this.apps.delete(actor, project, name, ifMatchVersion(ifMatch));
  }
}

/** How the app is delivered, for its audit record: `namespace=shop deliveryMode=inject consumers=shop/web,batch/*`. */
function auditSettings(a: AppEntity): string {
  const consumers = a.consumers.map((c) => `${c.namespace}/${c.serviceAccount}`).join(',');
  return `namespace=${a.namespace} deliveryMode=${a.deliveryMode}${consumers ? ` consumers=${consumers}` : ''}`;
}
