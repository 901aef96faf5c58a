import { Module } from '@nestjs/common';
import { HealthController } from './health.controller.js';
import { ReadinessService } from './readiness.service.js';

@Module({ providers: [ReadinessService], controllers: [HealthController], exports: [ReadinessService] })
export class HealthModule {}
