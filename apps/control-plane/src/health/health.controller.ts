import { Controller, Get, HttpStatus, Inject, Res } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { Public } from '../common/public-route.js';
import { ReadinessService, type Readiness } from './readiness.service.js';

@ApiTags('health')
@Public()
@Controller()
export class HealthController {
  constructor(@Inject(ReadinessService) private readonly readiness: ReadinessService) {}

  @Get('healthz')
  @ApiOperation({ summary: 'Liveness: the process is up and serving' })
  @ApiOkResponse({ schema: { example: { status: 'ok' } } })
  healthz(): { status: 'ok' } {
    return { status: 'ok' };
  }

  @Get('readyz')
  @ApiOperation({ summary: 'Readiness: PostgreSQL, Redis and the HSM each answer' })
  @ApiOkResponse({ schema: { example: { status: 'ready', failed: [], checks: { postgres: { ok: true, detail: 'ok', ms: 1 } } } } })
  @ApiServiceUnavailableResponse({
    schema: {
      example: { status: 'unavailable', failed: ['redis'], checks: { redis: { ok: false, detail: 'connection reconnecting', ms: 0 } } },
    },
  })
  async readyz(@Res({ passthrough: true }) res: Response): Promise<{ status: string } & Omit<Readiness, 'ready'>> {
    const { ready, ...rest } = await this.readiness.evaluate();
    res.status(ready ? HttpStatus.OK : HttpStatus.SERVICE_UNAVAILABLE);
    res.setHeader('Cache-Control', 'no-store');
    return { status: ready ? 'ready' : 'unavailable', ...rest };
  }
}
