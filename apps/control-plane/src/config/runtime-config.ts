import type { HsmToken, SigilConfig } from './sigil-config.js';

/**
 * The configuration the application modules run with: the validated environment plus the
 * concrete service locations (either given, or those of the embedded services started for
 * `make up`). Injected by class, so every consumer sees one typed object.
 */
export class RuntimeConfig {
  readonly http: SigilConfig['http'];
  readonly grpc: SigilConfig['grpc'];
  readonly agents: SigilConfig['agents'];
  readonly dataDir: string;
  readonly roles: SigilConfig['roles'];
  readonly log: SigilConfig['log'];
  readonly shutdownTimeoutMs: number;
  readonly bootstrapAdminToken: string | undefined;
  readonly rateLimit: SigilConfig['rateLimit'];
  readonly audit: SigilConfig['audit'];
  readonly rotation: SigilConfig['rotation'];
  readonly leases: SigilConfig['leases'];
  readonly connections: SigilConfig['connections'];
  readonly console: SigilConfig['console'];
  readonly db: { url: string; poolSize: number };
  readonly agentWork: SigilConfig['agentWork'];
  readonly redis: { url: string; /** prefix of every key Sigil writes; lets tests share one Redis */ prefix: string };
  readonly hsm: { token: HsmToken; poolSize: number; keyLabelPrefix: string; faultInjection: boolean };

  constructor(config: SigilConfig, services: { databaseUrl: string; redisUrl: string; hsmToken: HsmToken; redisPrefix?: string }) {
    this.http = config.http;
    this.grpc = config.grpc;
    this.agents = config.agents;
    this.dataDir = config.dataDir;
    this.roles = config.roles;
    this.log = config.log;
    this.shutdownTimeoutMs = config.shutdownTimeoutMs;
    this.bootstrapAdminToken = config.bootstrapAdminToken;
    this.rateLimit = config.rateLimit;
    this.audit = config.audit;
    this.rotation = config.rotation;
    this.leases = config.leases;
    this.connections = config.connections;
    this.console = config.console;
    this.db = { url: services.databaseUrl, poolSize: config.db.poolSize };
    this.agentWork = config.agentWork;
    this.redis = { url: services.redisUrl, prefix: services.redisPrefix ?? config.redisPrefix };
    this.hsm = {
      token: services.hsmToken,
      poolSize: config.hsm.poolSize,
      keyLabelPrefix: config.hsm.keyLabelPrefix,
      faultInjection: config.hsm.faultInjection,
    };
  }
}
