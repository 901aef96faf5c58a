import { Inject, Injectable } from '@nestjs/common';
import { AppsService } from '../apps/apps.service.js';
import type { Actor } from '../auth/policy.js';
import { CommonError, CommonErrorCode } from '../common/common.errors.js';
import { toPage, type Page } from '../common/http.js';
import { GrantsRepository, type ConsumptionCursor, type ConsumptionRow } from './grants.repository.js';

const CURSOR = /^([a-z0-9.-]{1,253})\/([a-z0-9.-]{1,253})\/([a-z0-9-]{1,63})\/([a-z0-9.-]{1,253})$/;

/** A consumption page's `after`: `cluster/secret/namespace/serviceAccount` of the previous page's last row. */
export function consumptionCursor(after: unknown): ConsumptionCursor | undefined {
  if (after === undefined) return undefined;
  const m = typeof after === 'string' ? CURSOR.exec(after) : null;
  if (!m) throw new CommonError(CommonErrorCode.InvalidCursor, 'after must be the `next` value of a previous page');
  return { cluster: m[1]!, secret: m[2]!, namespace: m[3]!, serviceAccount: m[4]! };
}

/** The consumption view of inject apps: which pods of which clusters received which secret. */
@Injectable()
export class InjectionService {
  constructor(
    @Inject(AppsService) private readonly apps: AppsService,
    @Inject(GrantsRepository) private readonly grants: GrantsRepository,
  ) {}

  async consumption(
    actor: Actor,
    project: string,
    app: string,
    after: ConsumptionCursor | undefined,
    limit: number,
  ): Promise<Page<ConsumptionRow>> {
    const r = await this.apps.resolve(actor, project, app);
    const rows = await this.grants.consumption(r.project.id, r.app.id, after, limit + 1);
    return toPage(rows, limit, (x) => `${x.cluster}/${x.secret}/${x.namespace}/${x.serviceAccount}`);
  }
}
