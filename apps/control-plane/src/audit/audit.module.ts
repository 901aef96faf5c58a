import { Module, type MiddlewareConsumer, type NestModule } from '@nestjs/common';
import { HsmModule } from '../hsm/hsm.module.js';
import { ProjectsModule } from '../projects/projects.module.js';
import { AuditController } from './audit.controller.js';
import { APP_INTERCEPTOR } from '@nestjs/core';
import { AuditInterceptor, AuditMiddleware } from './audit.middleware.js';
import { AuditRepository } from './audit.repository.js';
import { AuditService } from './audit.service.js';
import { FailedAttempts } from './failed-attempts.js';

@Module({
  imports: [ProjectsModule, HsmModule],
  providers: [AuditRepository, AuditService, FailedAttempts, { provide: APP_INTERCEPTOR, useClass: AuditInterceptor }],
  controllers: [AuditController],
  exports: [AuditService, FailedAttempts],
})
export class AuditModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(AuditMiddleware).forRoutes('*path');
  }
}
