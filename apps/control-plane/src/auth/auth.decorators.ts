import { SetMetadata, createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { Permission } from './policy.js';
import type { Actor } from './policy.js';
import type { ConsoleSession } from './console-session.repository.js';

export const REQUIRES = 'sigil:requires';
export const AUDIT_ACTION = 'sigil:audit-action';

/** The permission a route needs; every non-public route must declare one. */
export const Requires = (permission: Permission) => SetMetadata(REQUIRES, permission);

/** The audit log's name for a mutating route, e.g. `secret.update`. */
export const Audited = (action: string) => SetMetadata(AUDIT_ACTION, action);

export interface AuthenticatedRequest {
  actor?: Actor;
  /** Set when the request was authenticated by the console's session cookie. */
  consoleSession?: ConsoleSession;
  auditAction?: string;
  /** What a handler adds to its audit record's target once it succeeded (names and settings, never values). */
  auditDetail?: string;
  id?: unknown;
}

/** Sets the audit detail of the request (see AuthenticatedRequest.auditDetail). */
export type AuditDetailSetter = (detail: string) => void;

export const AuditDetail = createParamDecorator((_: unknown, ctx: ExecutionContext): AuditDetailSetter => {
  const req = ctx.switchToHttp().getRequest<AuthenticatedRequest>();
  return (detail) => (req.auditDetail = detail);
});

export const CurrentActor = createParamDecorator((_: unknown, ctx: ExecutionContext): Actor => {
  const actor = ctx.switchToHttp().getRequest<AuthenticatedRequest>().actor;
  if (!actor) throw new Error('route without authentication asked for the actor');
  return actor;
});
