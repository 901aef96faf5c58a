import { SetMetadata } from '@nestjs/common';

/** Metadata key of routes that need no API token; the auth guard (auth/auth.guard.ts) reads it. */
export const PUBLIC = 'sigil:public';

/**
 * No token needed (health, metrics, API docs, the agents' CA). Here rather than in auth/ so
 * infrastructure modules can mark their routes without depending on a feature.
 */
export const Public = () => SetMetadata(PUBLIC, true);
