import { SetMetadata, createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { Permission } from './policy.js';
import type { Actor } from './policy.js';

export const REQUIRES = 'sigil:requires';
export const AUDIT_ACTION = 'sigil:audit-action';

/** The permission a route needs; every non-public route must declare one. */
export const Requires = (permission: Permission) => SetMetadata(REQUIRES, permission);

/** The audit log's name for a mutating route, e.g. `secret.update`. */
export const Audited = (action: string) => SetMetadata(AUDIT_ACTION, action);

export interface AuthenticatedRequest {
  actor?: Actor;
  auditAction?: string;
  id?: unknown;
}

export const CurrentActor = createParamDecorator((_: unknown, ctx: ExecutionContext): Actor => {
  const actor = ctx.switchToHttp().getRequest<AuthenticatedRequest>().actor;
  if (!actor) throw new Error('route without authentication asked for the actor');
  return actor;
});
