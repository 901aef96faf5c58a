import { Controller, Get, Inject, Query } from '@nestjs/common';
import { ApiProblems } from '../common/api-problems.js';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiProperty, ApiQuery, ApiTags } from '@nestjs/swagger';
import { CurrentActor, Requires } from '../auth/auth.decorators.js';
import type { Actor } from '../auth/policy.js';
import { pageLimit } from '../common/http.js';
import { AuditError, AuditErrorCode } from './audit.errors.js';
import { ProjectsService } from '../projects/projects.service.js';
import { AuditService } from './audit.service.js';

export class AuditEventView {
  @ApiProperty({ example: '42' }) seq!: string;
  @ApiProperty() at!: Date;
  @ApiProperty({ nullable: true, type: String, example: 'ci-payments' }) actor!: string | null;
  @ApiProperty({ example: 'secret.update' }) action!: string;
  @ApiProperty({ example: 'project=payments app=checkout secret=checkout-db', nullable: true, type: String }) target!: string | null;
  @ApiProperty({ enum: ['attempted', 'success', 'denied', 'failed'] }) outcome!: string;
  @ApiProperty({ example: 200 }) status!: number;
  @ApiProperty({ example: 'PUT' }) method!: string;
  @ApiProperty({ example: '/api/v1/projects/payments/apps/checkout/secrets/checkout-db' }) path!: string;
  @ApiProperty({ nullable: true, type: String }) requestId!: string | null;
  @ApiProperty({ example: '5f1c…', description: 'hex HMAC-SHA256 (HSM key) chaining this record to the previous one' }) hash!: string;
}

export class AuditPage {
  @ApiProperty({ type: [AuditEventView] }) items!: AuditEventView[];
  @ApiProperty({ nullable: true, type: String, description: 'pass as `before` for older events' }) next!: string | null;
}

export class AuditHeadView {
  @ApiProperty({ example: '1200', description: 'records in the log' }) count!: string;
  @ApiProperty({ example: '1200' }) lastSeq!: string;
  @ApiProperty({ example: '5f1c…', description: 'hex MAC of the last record' }) lastHash!: string;
  @ApiProperty() at!: string;
  @ApiProperty({ nullable: true, type: String, description: 'hex HMAC-SHA256 of the head under the HSM audit key' }) mac!: string | null;
}

export class AuditVerificationView {
  @ApiProperty() ok!: boolean;
  @ApiProperty({ example: 1200 }) checked!: number;
  @ApiProperty({ example: 0, description: 'records verified under the legacy unkeyed scheme' }) legacy!: number;
  @ApiProperty({ required: false }) brokenAt?: string;
  @ApiProperty({
    required: false,
    enum: ['link_mismatch', 'mac_mismatch', 'legacy_hash_mismatch', 'scheme_downgrade', 'head_mismatch', 'head_mac_invalid'],
  })
  code?: string;
  @ApiProperty({ required: false }) reason?: string;
  @ApiProperty({ type: AuditHeadView, description: 'the anchor checked against; keep a copy outside the database' }) head!: AuditHeadView;
}

@ApiTags('audit')
@ApiBearerAuth()
@ApiProblems()
@Controller('audit')
export class AuditController {
  constructor(
    @Inject(AuditService) private readonly audit: AuditService,
    @Inject(ProjectsService) private readonly projects: ProjectsService,
  ) {}

  @Get()
  @Requires('audit:read')
  @ApiOperation({ summary: 'Audit events, newest first. Project-scoped tokens see only their project.' })
  @ApiQuery({ name: 'project', required: false })
  @ApiQuery({ name: 'action', required: false, example: 'secret.update' })
  @ApiQuery({ name: 'outcome', required: false, enum: ['attempted', 'success', 'denied', 'failed'] })
  @ApiQuery({ name: 'before', required: false })
  @ApiQuery({ name: 'limit', required: false })
  @ApiOkResponse({ type: AuditPage })
  async list(
    @CurrentActor() actor: Actor,
    @Query('project') project?: string,
    @Query('action') action?: string,
    @Query('outcome') outcome?: string,
    @Query('before') before?: string,
    @Query('limit') limit?: string,
  ): Promise<AuditPage> {
    if (outcome !== undefined && !['attempted', 'success', 'denied', 'failed'].includes(outcome))
      throw new AuditError(AuditErrorCode.InvalidOutcome, 'outcome must be attempted, success, denied or failed');
    if (before !== undefined && !/^\d{1,18}$/.test(before))
      throw new AuditError(AuditErrorCode.InvalidCursor, 'before must be an event seq');
    if (action !== undefined && (typeof action !== 'string' || !/^[a-z][a-z.-]{0,99}$/.test(action)))
      throw new AuditError(AuditErrorCode.InvalidAction, 'action must look like secret.update');
    if (project !== undefined && typeof project !== 'string')
      throw new AuditError(AuditErrorCode.InvalidProject, 'project must be given once');
    let projectId: string | null | undefined = project === undefined ? undefined : (await this.projects.resolve(actor, project)).id;
    if (actor.projectId !== null) projectId = actor.projectId; // scoped tokens: their project only
    const n = pageLimit(limit);
    const rows = await this.audit.list({ projectId, action, outcome, before }, n + 1);
    const items = rows.slice(0, n).map((r) => ({
      seq: r.seq,
      at: r.at,
      actor: r.actorName,
      action: r.action,
      target: r.target,
      outcome: r.outcome,
      status: r.status,
      method: r.method,
      path: r.path,
      requestId: r.requestId,
      hash: r.hash.toString('hex'),
    }));
    return { items, next: rows.length > n ? items[items.length - 1]!.seq : null };
  }

  @Get('verify')
  @Requires('audit:verify')
  @ApiOperation({ summary: 'Verify the HMAC chain over the whole log and its MACed head (admin); returns the head to keep' })
  @ApiOkResponse({ type: AuditVerificationView })
  verify(): Promise<AuditVerificationView> {
    return this.audit.verify();
  }
}
