import { Body, Controller, Get, Headers, HttpCode, Inject, Param, Post, Put, Query, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiHeader, ApiOkResponse, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { Audited, CurrentActor, Requires } from '../auth/auth.decorators.js';
import type { Actor } from '../auth/policy.js';
import { ApiProblems } from '../common/api-problems.js';
import { DeliveryError, DeliveryErrorCode } from '../delivery/delivery.errors.js';
import { IdempotencyService } from './idempotency.js';
import { ProjectClusterSelectorDto, PublicationView, PublishDto, UnpublishDto } from './publications.dto.js';
import { WAITERS_PER_TOKEN } from './publication-waiters.js';
import { PublicationsService } from './publications.service.js';

function waitSeconds(raw: string | undefined): number {
  if (raw === undefined || raw === '') return 0;
  const m = /^(\d{1,3})s?$/.exec(raw);
  if (!m || Number(m[1]) > 300)
    throw new DeliveryError(DeliveryErrorCode.InvalidWait, 'wait must be a number of seconds from 0 to 300 (e.g. 30 or 30s)');
  return Number(m[1]);
}

@ApiTags('publications')
@ApiBearerAuth()
@ApiProblems()
@Controller('projects/:project')
export class PublicationsController {
  constructor(
    @Inject(PublicationsService) private readonly publications: PublicationsService,
    @Inject(IdempotencyService) private readonly idempotency: IdempotencyService,
  ) {}

  @Post('apps/:app/publish')
  @HttpCode(200)
  @Requires('publications:write')
  @Audited('app.publish')
  @ApiOperation({ summary: 'Publish the app to clusters by name and/or label selector; later matching clusters join automatically' })
  @ApiHeader({ name: 'Idempotency-Key', required: false, description: 'a retry with the same key and body returns the first response' })
  @ApiOkResponse({ type: PublicationView })
  async publish(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('app') app: string,
    @Body() dto: PublishDto,
    @Headers('idempotency-key') key: string | undefined,
    @Res({ passthrough: true }) res: Response,
  ): Promise<PublicationView> {
    const r = await this.idempotency.run(actor, key, ['publish', project, app, dto], () =>
      this.publications.publish(actor, project, app, dto),
    );
    if (r.replayed) res.setHeader('Idempotent-Replayed', 'true');
    return r.body;
  }

  @Post('apps/:app/unpublish')
  @HttpCode(200)
  @Requires('publications:write')
  @Audited('app.unpublish')
  @ApiOperation({ summary: 'Unpublish the app from some clusters, or (without clusters) from all; agents delete its Secrets' })
  @ApiHeader({ name: 'Idempotency-Key', required: false })
  @ApiOkResponse({ type: PublicationView })
  async unpublish(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('app') app: string,
    @Body() dto: UnpublishDto,
    @Headers('idempotency-key') key: string | undefined,
    @Res({ passthrough: true }) res: Response,
  ): Promise<PublicationView> {
    const r = await this.idempotency.run(actor, key, ['unpublish', project, app, dto], () =>
      this.publications.unpublish(actor, project, app, dto),
    );
    if (r.replayed) res.setHeader('Idempotent-Replayed', 'true');
    return r.body;
  }

  @Get('apps/:app/publication')
  @Requires('apps:read')
  @ApiOperation({ summary: 'Where the app is published and, per cluster, pending / provisioned / failed / deprovisioning / deprovisioned' })
  @ApiQuery({
    name: 'wait',
    required: false,
    description: `long-poll: answer once converged, or after this many seconds (≤ 300); at most ${WAITERS_PER_TOKEN} at once per token (else 429 too_many_waiters)`,
  })
  @ApiOkResponse({ type: PublicationView })
  async get(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('app') app: string,
    @Res({ passthrough: true }) res: Response,
    @Query('wait') wait?: string,
  ): Promise<PublicationView> {
    const seconds = waitSeconds(wait);
    if (seconds === 0) return this.publications.view(actor, project, app);
    // A client that hangs up stops waiting at once and frees its slot.
    const gone = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) gone.abort();
    };
    res.on('close', onClose);
    try {
      return await this.publications.view(actor, project, app, seconds, gone.signal);
    } finally {
      res.off('close', onClose);
    }
  }

  @Put('cluster-selector')
  @HttpCode(204)
  @Requires('clusters:write')
  @Audited('project.cluster-selector.set')
  @ApiOperation({ summary: 'Which clusters the project may publish to (admin); {} allows all, null none' })
  async setClusterSelector(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Body() dto: ProjectClusterSelectorDto,
  ): Promise<void> {
    await this.publications.setProjectSelector(actor, project, dto.selector);
  }
}
