import { Controller, Get, HttpCode, Inject, Param, Post, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import { Audited, CurrentActor, Requires } from '../auth/auth.decorators.js';
import type { Actor } from '../auth/policy.js';
import { ApiProblems } from '../common/api-problems.js';
import { pageLimit } from '../common/http.js';
import { LeasePage, LeaseView } from './leases.dto.js';
import { LeasesService, type LeaseRow } from './leases.service.js';

const view = (l: LeaseRow, project: string, app: string): LeaseView => ({
  id: l.id,
  project,
  app,
  secret: l.secret,
  cluster: l.cluster,
  serial: l.serial,
  role: l.roleName,
  state: l.state,
  issuedAt: l.issuedAt,
  expiresAt: l.expiresAt,
  renewAt: l.renewAt,
  revokeAfter: l.revokeAfter,
  revokedAt: l.revokedAt,
  revokeReason: l.revokeReason,
  attempts: l.attempts,
  lastError: l.lastError,
  createdAt: l.createdAt,
});

@ApiTags('leases')
@ApiBearerAuth()
@ApiProblems()
@Controller()
export class LeasesController {
  constructor(@Inject(LeasesService) private readonly leases: LeasesService) {}

  @Get('projects/:project/apps/:app/leases')
  @Requires('secrets:read')
  @ApiOperation({ summary: "The app's dynamic-secret leases, newest first: one credential per cluster and serial (never a value)" })
  @ApiQuery({ name: 'cluster', required: false })
  @ApiQuery({ name: 'secret', required: false })
  @ApiQuery({ name: 'state', required: false })
  @ApiQuery({ name: 'limit', required: false })
  @ApiQuery({ name: 'after', required: false })
  @ApiOkResponse({ type: LeasePage })
  async listForApp(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('app') app: string,
    @Query('cluster') cluster?: string,
    @Query('secret') secret?: string,
    @Query('state') state?: string,
    @Query('limit') limit?: string,
    @Query('after') after?: string,
  ): Promise<LeasePage> {
    const r = await this.leases.listForApp(actor, project, app, { cluster, secret, state }, after, pageLimit(limit));
    return { items: r.page.items.map((l) => view(l, r.project.name, r.app.name)), next: r.page.next };
  }

  @Post('projects/:project/apps/:app/leases/:lease/revoke')
  @HttpCode(200)
  @Requires('secrets:write')
  @Audited('lease.revoke')
  @ApiOperation({
    summary: 'Revoke a lease now (its role is dropped within seconds); a cluster that should still hold the secret gets a fresh credential',
  })
  @ApiOkResponse({ type: LeaseView })
  async revoke(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('app') app: string,
    @Param('lease') id: string,
  ): Promise<LeaseView> {
    const r = await this.leases.revoke(actor, project, app, id);
    return view(r.lease, r.project, r.app);
  }

  @Get('clusters/:cluster/leases')
  @Requires('clusters:read')
  @ApiOperation({ summary: "The cluster's dynamic-secret leases, newest first (a project token sees its project's only)" })
  @ApiQuery({ name: 'secret', required: false })
  @ApiQuery({ name: 'state', required: false })
  @ApiQuery({ name: 'limit', required: false })
  @ApiQuery({ name: 'after', required: false })
  @ApiOkResponse({ type: LeasePage })
  async listForCluster(
    @CurrentActor() actor: Actor,
    @Param('cluster') cluster: string,
    @Query('secret') secret?: string,
    @Query('state') state?: string,
    @Query('limit') limit?: string,
    @Query('after') after?: string,
  ): Promise<LeasePage> {
    const r = await this.leases.listForCluster(actor, cluster, { secret, state }, after, pageLimit(limit));
    return { items: r.page.items.map((l) => view(l, l.projectName, l.appName)), next: r.page.next };
  }
}
