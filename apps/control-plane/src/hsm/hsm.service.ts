import { readFileSync } from 'node:fs';
import { Inject, Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { RuntimeConfig } from '../config/runtime-config.js';
import { HsmSessionPool } from './hsm-session-pool.js';
import { pkcs11js, tokenLabel } from './pkcs11-library.js';

/** Mechanisms Sigil's envelope scheme relies on; their presence is probed at start-up. */
const REQUIRED_MECHANISMS: Record<string, number> = {
  'AES-GCM': pkcs11js.CKM_AES_GCM,
  'AES-KEY-WRAP-PAD': pkcs11js.CKM_AES_KEY_WRAP_PAD,
  'AES-KEY-GEN': pkcs11js.CKM_AES_KEY_GEN,
  'RSA-PKCS-OAEP': pkcs11js.CKM_RSA_PKCS_OAEP,
};

export interface HsmCapabilities {
  tokenLabel: string;
  manufacturer: string;
  model: string;
  mechanisms: Record<string, boolean>;
}

/** Owns the PKCS#11 session pool; the only place outside hsm/ that reaches the HSM is through this. */
@Injectable()
export class HsmService implements OnModuleInit, OnApplicationShutdown {
  private pool: HsmSessionPool | undefined;
  private capabilities: HsmCapabilities | undefined;

  constructor(
    @Inject(RuntimeConfig) private readonly config: RuntimeConfig,
    @Inject(PinoLogger) private readonly logger: PinoLogger,
  ) {
    logger.setContext('hsm');
  }

  onModuleInit(): void {
    const { token, poolSize } = this.config.hsm;
    const pin = 'value' in token.pin ? token.pin.value : readFileSync(token.pin.file, 'utf8').trim();
    this.pool = new HsmSessionPool({ module: token.module, tokenLabel: token.tokenLabel, pin, size: poolSize });
    this.capabilities = this.probe(this.pool);
    this.logger.info({ capabilities: this.capabilities, poolSize }, 'HSM ready');
    const missing = Object.entries(this.capabilities.mechanisms).filter(([, ok]) => !ok);
    if (missing.length > 0) this.logger.warn({ missing: missing.map(([m]) => m) }, 'HSM lacks mechanisms Sigil needs');
  }

  get sessions(): HsmSessionPool {
    if (!this.pool) throw new Error('HSM not initialised');
    return this.pool;
  }

  /** Readiness: the token is present and a pooled session is usable. */
  async check(): Promise<HsmCapabilities> {
    const pool = this.sessions;
    await pool.withSession((s) => pool.pkcs11.C_GetSessionInfo(s));
    return this.capabilities!;
  }

  onApplicationShutdown(): void {
    this.pool?.close();
  }

  private probe(pool: HsmSessionPool): HsmCapabilities {
    const info = pool.tokenInfo();
    const available = new Set(pool.mechanisms());
    return {
      tokenLabel: tokenLabel(info),
      manufacturer: info.manufacturerID.trim(),
      model: info.model.trim(),
      mechanisms: Object.fromEntries(Object.entries(REQUIRED_MECHANISMS).map(([name, m]) => [name, available.has(m)])),
    };
  }
}
