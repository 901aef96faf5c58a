import { Body, Controller, Delete, Get, Headers, HttpCode, Inject, Param, Patch, Post, Query, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiOkResponse, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { AuditDetail, Audited, CurrentActor, Requires, type AuditDetailSetter } from '../auth/auth.decorators.js';
import type { Actor } from '../auth/policy.js';
import { ApiProblems, ApiUpstreamProblem } from '../common/api-problems.js';
import { afterCursor, ifMatchVersion, pageLimit, setEtag } from '../common/http.js';
import type { DatabaseConnectionEntity } from './connection.entity.js';
import { ConnectionPage, ConnectionVerification, ConnectionView, CreateConnectionDto, UpdateConnectionDto } from './connections.dto.js';
import { ConnectionsService } from './connections.service.js';

@ApiTags('connections')
@ApiBearerAuth()
@ApiProblems()
@Controller('projects/:project/connections')
export class ConnectionsController {
  constructor(@Inject(ConnectionsService) private readonly connections: ConnectionsService) {}

  @Post()
  @Requires('connections:write')
  @Audited('connection.create')
  @ApiOperation({
    summary:
      'Register a database connection; its admin password is sealed by the HSM on arrival and never returned. ' +
      "400 connection_host_denied when the host is Sigil's own database or Redis or outside the networks connections may reach",
  })
  @ApiCreatedResponse({ type: ConnectionView })
  async create(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Body() dto: CreateConnectionDto,
    @Res({ passthrough: true }) res: Response,
    @AuditDetail() audit: AuditDetailSetter,
  ): Promise<ConnectionView> {
    const r = await this.connections.create(actor, project, dto);
    audit(`connection=${r.connection.name} ${auditSettings(r.connection)}`);
    setEtag(res, r.connection.version);
    return ConnectionView.of(r.connection, r.project.name);
  }

  @Get()
  @Requires('connections:read')
  @ApiOperation({ summary: 'List database connections (never a password)' })
  @ApiQuery({ name: 'limit', required: false })
  @ApiQuery({ name: 'after', required: false })
  @ApiOkResponse({ type: ConnectionPage })
  async list(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Query('limit') limit?: string,
    @Query('after') after?: string,
  ): Promise<ConnectionPage> {
    const r = await this.connections.list(actor, project, afterCursor(after), pageLimit(limit));
    return { items: r.page.items.map((c) => ConnectionView.of(c, r.project.name)), next: r.page.next };
  }

  @Get(':connection')
  @Requires('connections:read')
  @ApiOkResponse({ type: ConnectionView })
  async get(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('connection') name: string,
    @Res({ passthrough: true }) res: Response,
  ): Promise<ConnectionView> {
    const r = await this.connections.resolve(actor, project, name);
    setEtag(res, r.connection.version);
    return ConnectionView.of(r.connection, r.project.name);
  }

  @Patch(':connection')
  @Requires('connections:write')
  @Audited('connection.update')
  @ApiOperation({ summary: 'Change settings or replace the admin password (name, engine and role prefix are fixed); honours If-Match' })
  @ApiOkResponse({ type: ConnectionView })
  async update(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('connection') name: string,
    @Body() dto: UpdateConnectionDto,
    @Headers('if-match') ifMatch: string | undefined,
    @Res({ passthrough: true }) res: Response,
    @AuditDetail() audit: AuditDetailSetter,
  ): Promise<ConnectionView> {
    const r = await this.connections.update(actor, project, name, dto, ifMatchVersion(ifMatch));
    audit(`${auditSettings(r.connection)}${dto.adminPassword === undefined ? '' : ' adminPassword=replaced'}`);
    setEtag(res, r.connection.version);
    return ConnectionView.of(r.connection, r.project.name);
  }

  @Delete(':connection')
  @HttpCode(204)
  @Requires('connections:write')
  @Audited('connection.delete')
  @ApiOperation({ summary: 'Delete a connection and its sealed admin password; 409 connection_in_use while a dynamic secret uses it' })
  async delete(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('connection') name: string,
    @Headers('if-match') ifMatch: string | undefined,
  ): Promise<void> {
    await this.connections.delete(actor, project, name, ifMatchVersion(ifMatch));
  }

  @Post(':connection/verify')
  @HttpCode(200)
  @Requires('connections:write')
  @Audited('connection.verify')
  @ApiOperation({
    summary:
      'Connect with the admin credential: the server version and whether the admin may create roles. ' +
      '502 connection_failed when the database cannot be reached or refuses (reason: unreachable, auth_failed, tls_failed, statement_failed); ' +
      "400 connection_host_denied when the host is Sigil's own database or Redis or outside the networks connections may reach",
  })
  @ApiOkResponse({ type: ConnectionVerification })
  @ApiUpstreamProblem('connection_failed: the target database could not be reached or refused; `reason` says how')
  async verify(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('connection') name: string,
  ): Promise<ConnectionVerification> {
    return (await this.connections.verify(actor, project, name)).info;
  }
}

/** The settings, for the audit record (never the password): `engine=postgresql host=db port=5432 …`. */
function auditSettings(c: DatabaseConnectionEntity): string {
  return `engine=${c.engine} host=${c.host} port=${c.port} database=${c.database} username=${c.username} tlsMode=${c.tlsMode} rolePrefix=${c.rolePrefix}`;
}
