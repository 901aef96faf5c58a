import { ApiTokenEntity } from '../auth/api-token.entity.js';

/** Every entity TypeORM maps; features add theirs here. */
export const entities = [ApiTokenEntity];
