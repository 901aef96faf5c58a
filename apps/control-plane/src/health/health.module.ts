import { Module } from '@nestjs/common';
import { HsmModule } from '../hsm/hsm.module.js';
import { RedisModule } from '../redis/redis.module.js';
import { HealthController } from './health.controller.js';
import { ReadinessService } from './readiness.service.js';

@Module({ imports: [RedisModule, HsmModule], providers: [ReadinessService], controllers: [HealthController], exports: [ReadinessService] })
export class HealthModule {}
