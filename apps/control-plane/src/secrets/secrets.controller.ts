import { Body, Controller, Delete, Get, Headers, HttpCode, Inject, Param, Post, Put, Query, Res } from '@nestjs/common';
import { ApiProblems } from '../common/api-problems.js';
import { ApiBearerAuth, ApiCreatedResponse, ApiOkResponse, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { Audited, CurrentActor, Requires } from '../auth/auth.decorators.js';
import type { Actor } from '../auth/policy.js';
import { afterCursor, ifMatchVersion, pageLimit, setEtag } from '../common/http.js';
import { dns1123LabelProblem } from '../common/kubernetes-names.js';
import { SecretsError, SecretsErrorCode } from './secrets.errors.js';
import { INJECT_NOTE, injectAnnotations, renderPodSpec } from './pod-spec.js';
import type { SecretEntity, SecretVersionEntity } from './secret.entity.js';
import {
  CreateSecretDto,
  PodSpecView,
  RollbackDto,
  RotationDto,
  SecretPage,
  SecretVersionView,
  SecretView,
  UpdateSecretDto,
} from './secrets.dto.js';
import { SecretsService, type SecretWithVersion } from './secrets.service.js';

function view(project: string, app: string, s: SecretEntity, current: SecretVersionEntity | undefined): SecretView {
  return {
    id: s.id,
    project,
    app,
    name: s.name,
    type: s.type,
    currentVersion: s.currentVersion,
    latestVersion: s.latestVersion,
    keys: current?.keys ?? (s.dynamic ? Object.keys(s.dynamic.keys).sort() : []),
    fingerprints: current?.fingerprints ?? {},
    sizeBytes: current?.sizeBytes ?? 0,
    generated: s.generator,
    dynamic: s.dynamic,
    rotateEveryDays: s.rotateEveryDays,
    nextRotationAt: s.nextRotationAt,
    lastRotatedAt: s.lastRotatedAt,
    version: s.version,
    createdAt: s.createdAt,
    updatedAt: s.updatedAt,
  };
}

const viewOf = (r: SecretWithVersion) => view(r.project.name, r.app.name, r.secret, r.current);

@ApiTags('secrets')
@ApiBearerAuth()
@ApiProblems()
@Controller('projects/:project/apps/:app')
export class SecretsController {
  constructor(@Inject(SecretsService) private readonly secrets: SecretsService) {}

  @Post('secrets')
  @Requires('secrets:write')
  @Audited('secret.create')
  @ApiOperation({ summary: 'Create a secret (version 1). Values are encrypted by the HSM on arrival and never returned.' })
  @ApiCreatedResponse({ type: SecretView })
  async create(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('app') app: string,
    @Body() dto: CreateSecretDto,
    @Res({ passthrough: true }) res: Response,
  ): Promise<SecretView> {
    const r = await this.secrets.create(actor, project, app, dto);
    setEtag(res, r.secret.version);
    return viewOf(r);
  }

  @Get('secrets')
  @Requires('secrets:read')
  @ApiOperation({ summary: 'List secrets (metadata only)' })
  @ApiQuery({ name: 'limit', required: false })
  @ApiQuery({ name: 'after', required: false })
  @ApiOkResponse({ type: SecretPage })
  async list(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('app') app: string,
    @Query('limit') limit?: string,
    @Query('after') after?: string,
  ): Promise<SecretPage> {
    const r = await this.secrets.list(actor, project, app, afterCursor(after), pageLimit(limit));
    return { items: r.page.items.map((s) => view(r.project.name, r.app.name, s, r.current.get(s.id))), next: r.page.next };
  }

  @Get('secrets/:secret')
  @Requires('secrets:read')
  @ApiOkResponse({ type: SecretView })
  async get(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('app') app: string,
    @Param('secret') name: string,
    @Res({ passthrough: true }) res: Response,
  ): Promise<SecretView> {
    const r = await this.secrets.get(actor, project, app, name);
    setEtag(res, r.secret.version);
    return viewOf(r);
  }

  @Put('secrets/:secret')
  @Requires('secrets:write')
  @Audited('secret.update')
  @ApiOperation({
    summary: 'Write a new version with these values (all keys); honours If-Match. A generated secret refuses it (409 secret_is_generated).',
  })
  @ApiOkResponse({ type: SecretView })
  async update(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('app') app: string,
    @Param('secret') name: string,
    @Body() dto: UpdateSecretDto,
    @Headers('if-match') ifMatch: string | undefined,
    @Res({ passthrough: true }) res: Response,
  ): Promise<SecretView> {
    const r = await this.secrets.update(actor, project, app, name, dto, ifMatchVersion(ifMatch));
    setEtag(res, r.secret.version);
    return viewOf(r);
  }

  @Get('secrets/:secret/versions')
  @Requires('secrets:read')
  @ApiOkResponse({ type: [SecretVersionView] })
  async versions(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('app') app: string,
    @Param('secret') name: string,
  ): Promise<SecretVersionView[]> {
    const r = await this.secrets.versions(actor, project, app, name);
    return r.versions.map((v) => ({
      version: v.version,
      current: v.version === r.secret.currentVersion,
      keys: v.keys,
      fingerprints: v.fingerprints,
      sizeBytes: v.sizeBytes,
      createdBy: v.createdBy,
      createdAt: v.createdAt,
    }));
  }

  @Post('secrets/:secret/rollback')
  @HttpCode(200)
  @Requires('secrets:write')
  @Audited('secret.rollback')
  @ApiOperation({ summary: 'Make an earlier version current again' })
  @ApiOkResponse({ type: SecretView })
  async rollback(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('app') app: string,
    @Param('secret') name: string,
    @Body() dto: RollbackDto,
    @Headers('if-match') ifMatch: string | undefined,
    @Res({ passthrough: true }) res: Response,
  ): Promise<SecretView> {
    const r = await this.secrets.rollback(actor, project, app, name, dto.version, ifMatchVersion(ifMatch));
    setEtag(res, r.secret.version);
    return viewOf(r);
  }

  @Post('secrets/:secret/rotate')
  @HttpCode(200)
  @Requires('secrets:write')
  @Audited('secret.rotate')
  @ApiOperation({
    summary: 'Generated secrets: new values from the HSM now, as a new version delivered like any rotation; honours If-Match',
  })
  @ApiOkResponse({ type: SecretView })
  async rotate(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('app') app: string,
    @Param('secret') name: string,
    @Headers('if-match') ifMatch: string | undefined,
    @Res({ passthrough: true }) res: Response,
  ): Promise<SecretView> {
    const r = await this.secrets.rotateNow(actor, project, app, name, ifMatchVersion(ifMatch));
    setEtag(res, r.secret.version);
    return viewOf(r);
  }

  @Put('secrets/:secret/rotation')
  @Requires('secrets:write')
  @Audited('secret.rotation.set')
  @ApiOperation({
    summary:
      'Generated secrets: rotate automatically every N days, counted from the last rotation (an overdue one rotates at the next sweep)',
  })
  @ApiOkResponse({ type: SecretView })
  async setRotation(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('app') app: string,
    @Param('secret') name: string,
    @Body() dto: RotationDto,
    @Headers('if-match') ifMatch: string | undefined,
    @Res({ passthrough: true }) res: Response,
  ): Promise<SecretView> {
    const r = await this.secrets.setRotation(actor, project, app, name, dto.rotateEveryDays, ifMatchVersion(ifMatch));
    setEtag(res, r.secret.version);
    return viewOf(r);
  }

  @Delete('secrets/:secret/rotation')
  @Requires('secrets:write')
  @Audited('secret.rotation.clear')
  @ApiOperation({ summary: 'Generated secrets: no automatic rotation any more (rotate-now still works)' })
  @ApiOkResponse({ type: SecretView })
  async clearRotation(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('app') app: string,
    @Param('secret') name: string,
    @Headers('if-match') ifMatch: string | undefined,
    @Res({ passthrough: true }) res: Response,
  ): Promise<SecretView> {
    const r = await this.secrets.setRotation(actor, project, app, name, null, ifMatchVersion(ifMatch));
    setEtag(res, r.secret.version);
    return viewOf(r);
  }

  @Delete('secrets/:secret')
  @HttpCode(204)
  @Requires('secrets:write')
  @Audited('secret.delete')
  async delete(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('app') app: string,
    @Param('secret') name: string,
    @Headers('if-match') ifMatch: string | undefined,
  ): Promise<void> {
    await this.secrets.delete(actor, project, app, name, ifMatchVersion(ifMatch));
  }

  @Get('pod-spec')
  @Requires('apps:read')
  @ApiOperation({
    summary:
      "The pod-spec fragment that consumes the app's Secrets (envFrom, or tmpfs Secret volumes); for inject apps the pod annotations",
  })
  @ApiQuery({ name: 'container', required: false, example: 'app' })
  @ApiOkResponse({ type: PodSpecView })
  async podSpec(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('app') app: string,
    @Query('container') container?: string,
  ): Promise<PodSpecView> {
    if (container !== undefined && dns1123LabelProblem(container))
      throw new SecretsError(SecretsErrorCode.InvalidContainer, `container ${dns1123LabelProblem(container)}`);
    const r = await this.secrets.names(actor, project, app);
    if (r.app.deliveryMode === 'inject')
      return { deliveryMode: r.app.deliveryMode, podSpec: {}, annotations: injectAnnotations(r.app), note: INJECT_NOTE };
    return { deliveryMode: r.app.deliveryMode, podSpec: renderPodSpec(r.app, r.names, container) };
  }
}
