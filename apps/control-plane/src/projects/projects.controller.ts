import { Body, Controller, Delete, Get, Headers, HttpCode, Inject, Param, Patch, Post, Put, Query, Res } from '@nestjs/common';
import { ApiProblems } from '../common/api-problems.js';
import { ApiBearerAuth, ApiCreatedResponse, ApiOkResponse, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { Audited, CurrentActor, Requires } from '../auth/auth.decorators.js';
import type { Actor } from '../auth/policy.js';
import { afterCursor, ifMatchVersion, pageLimit, setEtag } from '../common/http.js';
import {
  CreateProjectDto,
  ProjectNamespacesDto,
  ProjectNamespacesView,
  ProjectPage,
  ProjectView,
  UpdateProjectDto,
} from './projects.dto.js';
import { ProjectsService } from './projects.service.js';

@ApiTags('projects')
@ApiBearerAuth()
@ApiProblems()
@Controller('projects')
export class ProjectsController {
  constructor(@Inject(ProjectsService) private readonly projects: ProjectsService) {}

  @Post()
  @Requires('projects:write')
  @Audited('project.create')
  @ApiOperation({ summary: 'Create a project (admin)' })
  @ApiCreatedResponse({ type: ProjectView })
  async create(@Body() dto: CreateProjectDto, @Res({ passthrough: true }) res: Response): Promise<ProjectView> {
    const p = await this.projects.create(dto);
    setEtag(res, p.version);
    return ProjectView.of(p);
  }

  @Get()
  @Requires('projects:read')
  @ApiOperation({ summary: 'List projects visible to the token, by name' })
  @ApiQuery({ name: 'limit', required: false, example: 50 })
  @ApiQuery({ name: 'after', required: false, description: 'the `next` value of the previous page' })
  @ApiOkResponse({ type: ProjectPage })
  async list(@CurrentActor() actor: Actor, @Query('limit') limit?: string, @Query('after') after?: string): Promise<ProjectPage> {
    const page = await this.projects.list(actor, afterCursor(after), pageLimit(limit));
    return { items: page.items.map((p) => ProjectView.of(p)), next: page.next };
  }

  @Get(':project')
  @Requires('projects:read')
  @ApiOkResponse({ type: ProjectView })
  async get(@CurrentActor() actor: Actor, @Param('project') name: string, @Res({ passthrough: true }) res: Response): Promise<ProjectView> {
    const p = await this.projects.resolve(actor, name);
    setEtag(res, p.version);
    return ProjectView.of(p);
  }

  @Patch(':project')
  @Requires('projects:write')
  @Audited('project.update')
  @ApiOperation({ summary: 'Update a project (admin); honours If-Match' })
  @ApiOkResponse({ type: ProjectView })
  async update(
    @CurrentActor() actor: Actor,
    @Param('project') name: string,
    @Body() dto: UpdateProjectDto,
    @Headers('if-match') ifMatch: string | undefined,
    @Res({ passthrough: true }) res: Response,
  ): Promise<ProjectView> {
    const p = await this.projects.update(actor, name, dto, ifMatchVersion(ifMatch));
    setEtag(res, p.version);
    return ProjectView.of(p);
  }

  @Delete(':project')
  @HttpCode(204)
  @Requires('projects:write')
  @Audited('project.delete')
  @ApiOperation({ summary: 'Delete an empty project (admin)' })
  async delete(
    @CurrentActor() actor: Actor,
    @Param('project') name: string,
    @Headers('if-match') ifMatch: string | undefined,
  ): Promise<void> {
    await this.projects.delete(actor, name, ifMatchVersion(ifMatch));
  }

  @Get(':project/namespaces')
  @Requires('projects:read')
  @ApiOperation({ summary: "The Kubernetes namespaces the project's apps may write Secrets to" })
  @ApiOkResponse({ type: ProjectNamespacesView })
  async namespaces(@CurrentActor() actor: Actor, @Param('project') name: string): Promise<ProjectNamespacesView> {
    const r = await this.projects.listNamespaces(actor, name);
    return { project: r.project.name, namespaces: r.namespaces };
  }

  @Put(':project/namespaces')
  @Requires('projects:write')
  @Audited('project.namespaces.set')
  @ApiOperation({
    summary: 'Set the namespaces the project holds (admin); a namespace belongs to one project, kube-* to none',
    description:
      'Replaces the whole set. 409 namespace_claimed: another project holds one; 409 namespace_in_use: an app still uses a dropped one.',
  })
  @ApiOkResponse({ type: ProjectNamespacesView })
  async setNamespaces(
    @CurrentActor() actor: Actor,
    @Param('project') name: string,
    @Body() dto: ProjectNamespacesDto,
  ): Promise<ProjectNamespacesView> {
    const r = await this.projects.setNamespaces(actor, name, dto.namespaces);
    return { project: r.project.name, namespaces: r.namespaces };
  }
}
