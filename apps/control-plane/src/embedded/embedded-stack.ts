import path from 'node:path';
import type { Logger } from '@sigil/logging';
import type { HsmToken, SigilConfig } from '../config/sigil-config.js';
import { ensureSoftHsmToken } from '../hsm/softhsm-dev-token.js';
import { EmbeddedPostgres } from './embedded-postgres.js';
import { EmbeddedRedis } from './embedded-redis.js';

/**
 * "Embedded defaults": whatever the environment does not point at (DATABASE_URL,
 * REDIS_URL, SIGIL_PKCS11_*) is started or created under the data dir, so `make up` needs
 * nothing installed beyond what it installs itself. Production sets all three.
 */
export interface ResolvedServices {
  databaseUrl: string;
  redisUrl: string;
  hsmToken: HsmToken;
  /** Stops what was started here, in reverse order. */
  stop(): Promise<void>;
}

export async function resolveServices(config: SigilConfig, logger: Logger): Promise<ResolvedServices> {
  const stops: Array<() => Promise<void>> = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch((err: unknown) => logger.warn({ err }, 'stopping an embedded service failed'));
  };
  try {
    let databaseUrl = config.databaseUrl;
    if (databaseUrl === undefined) {
      const pg = new EmbeddedPostgres({ dir: path.join(config.dataDir, 'postgres'), database: 'sigil', durable: true });
      databaseUrl = await pg.start();
      stops.push(() => pg.stop());
      logger.info({ dir: pg.pgdata }, 'embedded PostgreSQL started (DATABASE_URL unset)');
    }
    let redisUrl = config.redisUrl;
    if (redisUrl === undefined) {
      const redis = new EmbeddedRedis({ dir: path.join(config.dataDir, 'redis'), durable: true });
      redisUrl = await redis.start();
      stops.push(() => redis.stop());
      logger.info('embedded Redis started on loopback (REDIS_URL unset)');
    }
    let hsmToken = config.hsm.token;
    if (hsmToken === undefined) {
      const dir = path.join(config.dataDir, 'softhsm');
      hsmToken = await ensureSoftHsmToken(dir);
      logger.info(
        { conf: path.join(dir, 'softhsm2.conf'), label: hsmToken.tokenLabel },
        'development SoftHSM token (SIGIL_PKCS11_MODULE unset)',
      );
    }
    return { databaseUrl, redisUrl, hsmToken, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
