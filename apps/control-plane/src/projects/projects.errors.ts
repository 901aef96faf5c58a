import { featureError, type ErrorKinds } from '../common/sigil-error.js';

/** Codes of projects and their namespaces. */
export enum ProjectsErrorCode {
  ProjectNotFound = 'project_not_found',
  ProjectExists = 'project_exists',
  ProjectNotEmpty = 'project_not_empty',
  NamespaceReserved = 'namespace_reserved',
  NamespaceClaimed = 'namespace_claimed',
  NamespaceInUse = 'namespace_in_use',
}

export const PROJECTS_ERROR_KINDS: ErrorKinds<ProjectsErrorCode> = {
  [ProjectsErrorCode.ProjectNotFound]: 'not_found',
  [ProjectsErrorCode.ProjectExists]: 'conflict',
  [ProjectsErrorCode.ProjectNotEmpty]: 'conflict',
  [ProjectsErrorCode.NamespaceReserved]: 'invalid',
  [ProjectsErrorCode.NamespaceClaimed]: 'conflict',
  [ProjectsErrorCode.NamespaceInUse]: 'conflict',
};

export class ProjectsError extends featureError(PROJECTS_ERROR_KINDS) {}
