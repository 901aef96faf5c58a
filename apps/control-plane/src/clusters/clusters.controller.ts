import { Body, Controller, Delete, Get, Headers, HttpCode, Inject, Param, Patch, Post, Put, Query, Res } from '@nestjs/common';
import { ApiProblems } from '../common/api-problems.js';
import { ApiBearerAuth, ApiCreatedResponse, ApiNoContentResponse, ApiOkResponse, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { Audited, CurrentActor, Requires } from '../auth/auth.decorators.js';
import type { Actor } from '../auth/policy.js';
import { afterCursor, ifMatchVersion, pageLimit, parseLabelFilter, setEtag } from '../common/http.js';
import {
  ClusterPage,
  ClusterView,
  CreateEnrollmentTokenDto,
  EnrollmentTokenInfoView,
  EnrollmentTokenList,
  EnrollmentTokenView,
  KubernetesIdentityDto,
  RegisterClusterDto,
  RelabelClusterDto,
} from './clusters.dto.js';
import { AgentPresence } from '../events/agent-presence.js';
import type { ClusterEntity } from './cluster.entity.js';
import { ClustersService } from './clusters.service.js';

@ApiTags('clusters')
@ApiBearerAuth()
@ApiProblems()
@Controller('clusters')
export class ClustersController {
  constructor(
    @Inject(ClustersService) private readonly clusters: ClustersService,
    @Inject(AgentPresence) private readonly presence: AgentPresence,
  ) {}

  /** The views of `clusters`, each with whether its agent is connected now (one Redis call for all). */
  private async views(clusters: ClusterEntity[]): Promise<ClusterView[]> {
    const connected = await this.presence.connected(clusters.map((c) => c.id));
    return clusters.map((c) => ClusterView.of(c, connected ? (connected.get(c.id) ?? false) : null));
  }

  private async view(c: ClusterEntity): Promise<ClusterView> {
    return (await this.views([c]))[0]!;
  }

  @Post()
  @Requires('clusters:write')
  @Audited('cluster.register')
  @ApiOperation({ summary: 'Register a cluster (admin)' })
  @ApiCreatedResponse({ type: ClusterView })
  async register(@Body() dto: RegisterClusterDto, @Res({ passthrough: true }) res: Response): Promise<ClusterView> {
    const c = await this.clusters.register(dto.name, dto.labels ?? {}, dto.kubernetesIdentity);
    setEtag(res, c.version);
    return this.view(c);
  }

  @Get()
  @Requires('clusters:read')
  @ApiQuery({ name: 'limit', required: false })
  @ApiQuery({ name: 'after', required: false })
  @ApiQuery({ name: 'labels', required: false, example: 'region=eu-west,tier=store' })
  @ApiOperation({ summary: 'The clusters the token may publish to (admins: all)' })
  @ApiOkResponse({ type: ClusterPage })
  async list(
    @CurrentActor() actor: Actor,
    @Query('limit') limit?: string,
    @Query('after') after?: string,
    @Query('labels') labels?: string,
  ): Promise<ClusterPage> {
    const page = await this.clusters.list(actor, afterCursor(after), pageLimit(limit), parseLabelFilter(labels));
    return { items: await this.views(page.items), next: page.next };
  }

  @Get(':cluster')
  @Requires('clusters:read')
  @ApiOkResponse({ type: ClusterView })
  async get(@CurrentActor() actor: Actor, @Param('cluster') name: string, @Res({ passthrough: true }) res: Response): Promise<ClusterView> {
    const c = await this.clusters.getVisible(actor, name);
    setEtag(res, c.version);
    return this.view(c);
  }

  @Patch(':cluster')
  @Requires('clusters:write')
  @Audited('cluster.relabel')
  @ApiOperation({ summary: 'Replace the labels of a cluster (admin)' })
  @ApiOkResponse({ type: ClusterView })
  async relabel(
    @Param('cluster') name: string,
    @Body() dto: RelabelClusterDto,
    @Headers('if-match') ifMatch: string | undefined,
    @Res({ passthrough: true }) res: Response,
  ): Promise<ClusterView> {
    const c = await this.clusters.relabel(name, dto.labels, ifMatchVersion(ifMatch));
    setEtag(res, c.version);
    return this.view(c);
  }

  @Put(':cluster/kubernetes-identity')
  @Requires('clusters:write')
  @Audited('cluster.kubernetes-identity.set')
  @ApiOperation({ summary: 'Let the cluster’s agent enroll with its own service-account identity (admin)' })
  @ApiOkResponse({ type: ClusterView })
  async setKubernetesIdentity(
    @Param('cluster') name: string,
    @Body() dto: KubernetesIdentityDto,
    @Headers('if-match') ifMatch: string | undefined,
    @Res({ passthrough: true }) res: Response,
  ): Promise<ClusterView> {
    const c = await this.clusters.setKubernetesIdentity(name, dto.kubernetesIdentity, ifMatchVersion(ifMatch));
    setEtag(res, c.version);
    return this.view(c);
  }

  @Delete(':cluster/kubernetes-identity')
  @Requires('clusters:write')
  @Audited('cluster.kubernetes-identity.remove')
  @ApiOperation({ summary: 'Stop accepting service-account identity enrollment for the cluster (admin)' })
  @ApiOkResponse({ type: ClusterView })
  async removeKubernetesIdentity(
    @Param('cluster') name: string,
    @Headers('if-match') ifMatch: string | undefined,
    @Res({ passthrough: true }) res: Response,
  ): Promise<ClusterView> {
    const c = await this.clusters.setKubernetesIdentity(name, null, ifMatchVersion(ifMatch));
    setEtag(res, c.version);
    return this.view(c);
  }

  @Post(':cluster/disable')
  @HttpCode(200)
  @Requires('clusters:write')
  @Audited('cluster.disable')
  @ApiOperation({ summary: 'Disable a cluster: its agent loses access at once (admin)' })
  @ApiOkResponse({ type: ClusterView })
  async disable(
    @Param('cluster') name: string,
    @Headers('if-match') ifMatch: string | undefined,
    @Res({ passthrough: true }) res: Response,
  ): Promise<ClusterView> {
    const c = await this.clusters.setEnabled(name, false, ifMatchVersion(ifMatch));
    setEtag(res, c.version);
    return this.view(c);
  }

  @Post(':cluster/enable')
  @HttpCode(200)
  @Requires('clusters:write')
  @Audited('cluster.enable')
  @ApiOkResponse({ type: ClusterView })
  async enable(
    @Param('cluster') name: string,
    @Headers('if-match') ifMatch: string | undefined,
    @Res({ passthrough: true }) res: Response,
  ): Promise<ClusterView> {
    const c = await this.clusters.setEnabled(name, true, ifMatchVersion(ifMatch));
    setEtag(res, c.version);
    return this.view(c);
  }

  @Delete(':cluster')
  @HttpCode(204)
  @Requires('clusters:write')
  @Audited('cluster.delete')
  async delete(@Param('cluster') name: string, @Headers('if-match') ifMatch: string | undefined): Promise<void> {
    await this.clusters.delete(name, ifMatchVersion(ifMatch));
  }

  @Post(':cluster/enrollment-tokens')
  @Requires('clusters:write')
  @Audited('cluster.enrollment-token.create')
  @ApiOperation({ summary: 'A one-time enrollment token for the cluster’s agent, shown once (admin)' })
  @ApiCreatedResponse({ type: EnrollmentTokenView })
  async enrollmentToken(
    @CurrentActor() actor: Actor,
    @Param('cluster') name: string,
    @Body() dto: CreateEnrollmentTokenDto,
    @Res({ passthrough: true }) res: Response,
  ): Promise<EnrollmentTokenView> {
    res.setHeader('Cache-Control', 'no-store');
    return this.clusters.createEnrollmentToken(actor, name, dto.ttlSeconds);
  }

  @Get(':cluster/enrollment-tokens')
  @Requires('clusters:write')
  @ApiOperation({ summary: 'The cluster’s enrollment tokens, newest first: metadata only, never the token (admin)' })
  @ApiOkResponse({ type: EnrollmentTokenList })
  async enrollmentTokens(@Param('cluster') name: string): Promise<EnrollmentTokenList> {
    const now = Date.now();
    return { items: (await this.clusters.listEnrollmentTokens(name)).map((t) => EnrollmentTokenInfoView.of(t, now)) };
  }

  @Delete(':cluster/enrollment-tokens/:id')
  @HttpCode(204)
  @Requires('clusters:write')
  @Audited('cluster.enrollment-token.revoke')
  @ApiOperation({ summary: 'Revoke an enrollment token: an Enroll with it fails from now on (admin)' })
  @ApiNoContentResponse({ description: 'revoked' })
  async revokeEnrollmentToken(@Param('cluster') name: string, @Param('id') id: string): Promise<void> {
    await this.clusters.revokeEnrollmentToken(name, id);
  }
}
