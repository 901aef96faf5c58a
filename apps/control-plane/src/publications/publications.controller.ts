import { Body, Controller, Get, Headers, HttpCode, Inject, Param, Post, Put, Query, Req, Res } from '@nestjs/common';
import {
  ApiBearerAuth,
  ApiHeader,
  ApiOkResponse,
  ApiOperation,
  ApiProduces,
  ApiQuery,
  ApiTags,
  getSchemaPath,
  ApiExtraModels,
} from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { Audited, CurrentActor, Requires } from '../auth/auth.decorators.js';
import type { Actor } from '../auth/policy.js';
import { ApiProblems } from '../common/api-problems.js';
import { DeliveryError, DeliveryErrorCode } from '../delivery/delivery.errors.js';
import { IdempotencyService } from './idempotency.js';
import { CommonError, CommonErrorCode } from '../common/common.errors.js';
import { afterCursor, pageLimit, parseLabelFilter } from '../common/http.js';
import {
  DELIVERY_STATES,
  DeliveriesEventData,
  DeliveryPage,
  type DeliveryState,
  PlacementView,
  ProjectClusterSelectorDto,
  PublicationView,
  PublishDto,
  PublishPreview,
  UnpublishDto,
} from './publications.dto.js';
import type { DeliveryFilter } from './publication-status.repository.js';
import {
  COALESCE_MS,
  DeliveryStreams,
  EVENT_STREAMS_PER_REPLICA,
  EVENT_STREAMS_PER_TOKEN,
  HEARTBEAT_MS,
  ITEMS_PER_MESSAGE,
  STREAM_LIFETIME_MS,
} from './delivery-streams.js';
import { WAITERS_PER_TOKEN } from './publication-waiters.js';
import { PublicationsService } from './publications.service.js';

function waitSeconds(raw: string | undefined): number {
  if (raw === undefined || raw === '') return 0;
  const m = /^(\d{1,3})s?$/.exec(raw);
  if (!m || Number(m[1]) > 300)
    throw new DeliveryError(DeliveryErrorCode.InvalidWait, 'wait must be a number of seconds from 0 to 300 (e.g. 30 or 30s)');
  return Number(m[1]);
}

/** Deliveries listed per page when `limit` is not given. */
const DELIVERIES_PAGE = 100;

/** `?state=pending,failed&name=store&labels=tier=store` → a deliveries filter. */
function deliveryFilter(state: unknown, name: unknown, labels: unknown): DeliveryFilter {
  const filter: DeliveryFilter = {};
  if (state !== undefined && state !== '') {
    const states = typeof state === 'string' ? state.split(',') : [];
    if (states.length === 0 || !states.every((s) => (DELIVERY_STATES as readonly string[]).includes(s)))
      throw new DeliveryError(
        DeliveryErrorCode.InvalidStateFilter,
        `state must be one or more of ${DELIVERY_STATES.join(', ')}, comma-separated`,
      );
    filter.states = [...new Set(states as DeliveryState[])];
  }
  if (name !== undefined && name !== '') {
    if (typeof name !== 'string' || name.length > 253)
      throw new DeliveryError(DeliveryErrorCode.InvalidNameFilter, 'name must be a text of at most 253 characters');
    filter.name = name;
  }
  if (labels !== undefined) {
    if (typeof labels !== 'string') throw new CommonError(CommonErrorCode.InvalidLabelFilter, 'labels must be given once');
    const parsed = parseLabelFilter(labels);
    if (parsed) filter.labels = parsed;
  }
  return filter;
}

const EVENTS_DESCRIPTION = `Server-Sent Events (text/event-stream) while a rollout runs, fed by the cluster events every replica shares (Redis), never by polling.

- \`event: ready\`, \`data: {}\` once, when the stream is live: (re)fetch the page you show now, then apply the messages that follow.
- \`event: deliveries\`, \`data: {"items": FleetDeliveryView[], "summary": PublicationSummary}\` (DeliveriesEventData): the current rows, read from PostgreSQL, of the app's clusters whose delivery may have changed (an agent reported, a snapshot was built, a delivery failed), with the app's summary. Events within ${COALESCE_MS} ms are sent together; at most ${ITEMS_PER_MESSAGE} rows per message, more are split over several messages. Rows may not match your filters: apply them client-side, and insert or drop rows accordingly.
- \`event: reset\`, \`data: {"summary": PublicationSummary}\`: the app was published or unpublished (membership moved, possibly for thousands of clusters), or rows were lost (too many at once, a failed read): refetch your page.
- \`: ping\` comment lines every ${HEARTBEAT_MS / 1000} s.

The stream ends after ${STREAM_LIFETIME_MS / 60_000} minutes (it announces \`retry: 2000\`; EventSource reconnects and is authenticated again, then sends \`ready\`). At most ${EVENT_STREAMS_PER_TOKEN} streams per API token (429 too_many_event_streams) and ${EVENT_STREAMS_PER_REPLICA} per server (503 event_streams_full) at once. Refusals, an unknown app (404) and missing permissions are ordinary application/problem+json answers. No values: names, versions and generations only.`;

@ApiTags('publications')
@ApiBearerAuth()
@ApiProblems()
@Controller('projects/:project')
export class PublicationsController {
  constructor(
    @Inject(PublicationsService) private readonly publications: PublicationsService,
    @Inject(IdempotencyService) private readonly idempotency: IdempotencyService,
    @Inject(DeliveryStreams) private readonly streams: DeliveryStreams,
  ) {}

  @Post('apps/:app/publish/preview')
  @HttpCode(200)
  @Requires('publications:write')
  @ApiOperation({
    summary: 'What publish with this body would do, without doing it',
    description:
      'Resolves the body exactly as POST …/publish does (the same code, on the same reads) and writes nothing; not recorded in the ' +
      'audit log (it changes nothing). Needs the publish permission, as publish does: a viewer gets 403. Unknown and refused ' +
      'clusters are reported, not refused.',
  })
  @ApiOkResponse({ type: PublishPreview })
  preview(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('app') app: string,
    @Body() dto: PublishDto,
  ): Promise<PublishPreview> {
    return this.publications.preview(actor, project, app, dto);
  }

  @Get('apps/:app/deliveries')
  @Requires('apps:read')
  @ApiOperation({
    summary: 'The clusters the app is published to (or being removed from), a page at a time, by name, with the app’s summary',
  })
  @ApiQuery({ name: 'limit', required: false, description: `1 to 500; default ${DELIVERIES_PAGE}` })
  @ApiQuery({ name: 'after', required: false, description: 'the `next` of the previous page (a cluster name)' })
  @ApiQuery({ name: 'state', required: false, example: 'pending,failed', description: `one or more of ${DELIVERY_STATES.join(', ')}` })
  @ApiQuery({ name: 'name', required: false, example: 'store', description: 'clusters whose name contains this (case-insensitive)' })
  @ApiQuery({ name: 'labels', required: false, example: 'region=eu-west,tier=store', description: 'as GET /clusters: key=value,…' })
  @ApiOkResponse({ type: DeliveryPage })
  deliveries(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('app') app: string,
    @Query('limit') limit?: string,
    @Query('after') after?: string,
    @Query('state') state?: string,
    @Query('name') name?: string,
    @Query('labels') labels?: string,
  ): Promise<DeliveryPage> {
    const filter = deliveryFilter(state, name, labels);
    return this.publications.deliveries(actor, project, app, filter, afterCursor(after), pageLimit(limit, DELIVERIES_PAGE));
  }

  @Get('apps/:app/deliveries/events')
  @Requires('apps:read')
  @ApiOperation({ summary: 'Live updates of the app’s deliveries (Server-Sent Events)', description: EVENTS_DESCRIPTION })
  @ApiProduces('text/event-stream')
  @ApiExtraModels(DeliveriesEventData)
  @ApiOkResponse({
    description: 'an event stream; the data of `deliveries` messages is DeliveriesEventData',
    content: {
      'text/event-stream': {
        schema: { type: 'string', description: `messages whose data is ${getSchemaPath(DeliveriesEventData)}` },
        example: 'retry: 2000\n\nevent: ready\ndata: {}\n\nevent: deliveries\ndata: {"items":[…],"summary":{…}}\n\n: ping\n\n',
      },
    },
  })
  async deliveryEvents(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('app') app: string,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    // Before anything is written: an unknown app or a refusal is an ordinary problem+json answer.
    const appId = await this.publications.appId(actor, project, app);
    this.streams.attach(actor.tokenId, appId, req, res);
  }

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

  @Get('apps/:app/placement')
  @Requires('apps:read')
  @ApiOperation({
    summary: 'Where the app is published (cluster names, label selectors, exclusions), without the per-cluster rows of /publication',
  })
  @ApiOkResponse({ type: PlacementView })
  placement(@CurrentActor() actor: Actor, @Param('project') project: string, @Param('app') app: string): Promise<PlacementView> {
    return this.publications.placement(actor, project, app);
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
