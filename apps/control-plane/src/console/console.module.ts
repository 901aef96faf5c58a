import { Module } from '@nestjs/common';
import { AuditModule } from '../audit/audit.module.js';
import { AuthModule } from '../auth/auth.module.js';
import { ConsoleSessionsController } from './console-sessions.controller.js';

/**
 * The web console's server side (issue 21, decision 021): sign-in and sign-out. The sessions
 * themselves (their table, the cookie, the guard's checks) live in auth/.
 */
@Module({ imports: [AuthModule, AuditModule], controllers: [ConsoleSessionsController] })
export class ConsoleModule {}
