import { Inject, Injectable } from '@nestjs/common';
import { AuditService } from '../audit/audit.service.js';
import { Actor } from '../auth/policy.js';

/** The actor of the leases sweeps (issue, renewal, revocation, reaper) in the audit log. */
export const SYSTEM_LEASES = new Actor('system:leases', 'system:leases', 'admin', null);

/**
 * Every issue and revocation in the audit log, as `system:leases`: names, serial and role only,
 * never a value (the role name is not secret; its password never leaves the issuer).
 */
@Injectable()
export class LeaseAudit {
  constructor(@Inject(AuditService) private readonly audit: AuditService) {}

  record(
    action: 'lease.issue' | 'lease.revoke' | 'lease.reap',
    outcome: 'success' | 'failed',
    status: number,
    where: { project?: string | null; app?: string | null; secret?: string | null },
    what: { cluster?: string | null; serial?: number; role: string; reason?: string | null },
  ): Promise<void> {
    const parts = [
      where.project && `project=${where.project}`,
      where.app && `app=${where.app}`,
      where.secret && `secret=${where.secret}`,
      what.cluster && `cluster=${what.cluster}`,
      what.serial !== undefined && `serial=${what.serial}`,
      `role=${what.role}`,
      what.reason && `reason=${what.reason}`,
    ].filter(Boolean);
    return this.audit.record({
      at: new Date(),
      actorId: null,
      actorName: SYSTEM_LEASES.name,
      action,
      method: 'SYSTEM',
      path: where.project && where.app ? `/api/v1/projects/${where.project}/apps/${where.app}/leases` : '/api/v1/leases',
      target: parts.join(' '),
      ...(where.project ? { projectName: where.project } : {}),
      outcome,
      status,
      requestId: null,
    });
  }
}
