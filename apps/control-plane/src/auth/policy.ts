import type { ApiTokenRole } from './api-token.entity.js';

export type Permission =
  | 'projects:read'
  | 'projects:write'
  | 'apps:read'
  | 'apps:write'
  | 'secrets:read'
  | 'secrets:write'
  | 'connections:read'
  | 'connections:write'
  | 'clusters:read'
  | 'clusters:write'
  | 'publications:write'
  | 'tokens:manage'
  | 'audit:read'
  | 'audit:verify'
  | 'root-keys:manage';

const READ: Permission[] = ['projects:read', 'apps:read', 'secrets:read', 'connections:read', 'clusters:read'];

/**
 * What each role may do. Project scope is separate: a token scoped to a project sees only that
 * project (anything else is "not found"), whatever its role.
 */
export const ROLE_PERMISSIONS: Record<ApiTokenRole, ReadonlySet<Permission>> = {
  admin: new Set<Permission>([
    ...READ,
    'projects:write',
    'apps:write',
    'secrets:write',
    'connections:write',
    'clusters:write',
    'publications:write',
    'tokens:manage',
    'audit:read',
    'audit:verify',
    'root-keys:manage',
  ]),
  operator: new Set<Permission>([...READ, 'apps:write', 'secrets:write', 'connections:write', 'publications:write', 'audit:read']),
  pipeline: new Set<Permission>([...READ, 'publications:write']),
  viewer: new Set<Permission>([...READ, 'audit:read']),
};

/** Who is calling: the API token, never its secret. */
export class Actor {
  constructor(
    readonly tokenId: string,
    readonly name: string,
    readonly role: ApiTokenRole,
    /** null: all projects */
    readonly projectId: string | null,
  ) {}

  can(permission: Permission): boolean {
    return ROLE_PERMISSIONS[this.role].has(permission);
  }

  /** Whether project data of `projectId` exists for this actor at all. */
  sees(projectId: string): boolean {
    return this.projectId === null || this.projectId === projectId;
  }
}
