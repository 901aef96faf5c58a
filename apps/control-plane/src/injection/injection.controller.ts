import { Controller, Get, Inject, Param, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import { CurrentActor, Requires } from '../auth/auth.decorators.js';
import type { Actor } from '../auth/policy.js';
import { ApiProblems } from '../common/api-problems.js';
import { pageLimit } from '../common/http.js';
import { ConsumptionPage } from './injection.dto.js';
import { consumptionCursor, InjectionService } from './injection.service.js';

@ApiTags('apps')
@ApiBearerAuth()
@ApiProblems()
@Controller('projects/:project/apps/:app')
export class InjectionController {
  constructor(@Inject(InjectionService) private readonly injection: InjectionService) {}

  @Get('consumption')
  @Requires('apps:read')
  @ApiOperation({
    summary: "Which pods received an inject app's secrets: per cluster, secret, namespace and service account (no values)",
  })
  @ApiQuery({ name: 'limit', required: false })
  @ApiQuery({ name: 'after', required: false })
  @ApiOkResponse({ type: ConsumptionPage })
  async consumption(
    @CurrentActor() actor: Actor,
    @Param('project') project: string,
    @Param('app') app: string,
    @Query('limit') limit?: string,
    @Query('after') after?: string,
  ): Promise<ConsumptionPage> {
    return this.injection.consumption(actor, project, app, consumptionCursor(after), pageLimit(limit));
  }
}
