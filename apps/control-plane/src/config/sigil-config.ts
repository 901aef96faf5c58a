import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { networksProblem } from '../common/networks.js';

/**
 * The control plane's whole configuration, read once from the environment at start-up.
 * Anything wrong fails fast with one line naming the variable (see ConfigError).
 */

export const ROLES = ['http', 'grpc', 'worker'] as const;
export type Role = (typeof ROLES)[number];

/** Variables whose values must never be echoed back, even in a validation error. */
const SECRET_VARIABLES = new Set(['DATABASE_URL', 'REDIS_URL', 'SIGIL_PKCS11_PIN', 'SIGIL_BOOTSTRAP_ADMIN_TOKEN']);

const port = (fallback: number, min = 1) =>
  z
    .string()
    .trim()
    .default(String(fallback))
    .refine((v) => /^\d+$/.test(v) && Number(v) >= min && Number(v) <= 65535, `must be an integer port between ${min} and 65535`)
    .transform(Number);

const positiveInt = (fallback: number) =>
  z
    .string()
    .trim()
    .default(String(fallback))
    .refine((v) => /^\d+$/.test(v) && Number(v) > 0, 'must be a positive integer')
    .transform(Number);

const networks = (fallback: string) =>
  z
    .string()
    .trim()
    .default(fallback)
    .transform((v) =>
      v
        .split(',')
        .map((n) => n.trim())
        .filter((n) => n !== ''),
    )
    .superRefine((cidrs, ctx) => {
      const problem = networksProblem(cidrs);
      if (problem) ctx.addIssue({ code: 'custom', message: `must be a comma-separated list of addresses or CIDRs: ${problem}` });
    });

const optionalUrl = (protocols: readonly string[]) =>
  z
    .string()
    .trim()
    .optional()
    .transform((v) => (v === '' ? undefined : v))
    .refine(
      (v) => {
        if (v === undefined) return true;
        try {
          return protocols.includes(new URL(v).protocol);
        } catch {
          return false;
        }
      },
      `must be a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}`,
    );

const envSchema = z
  .object({
    SIGIL_HTTP_HOST: z.string().trim().min(1).default('127.0.0.1'),
    SIGIL_HTTP_PORT: port(8080),
    SIGIL_GRPC_HOST: z.string().trim().min(1).default('127.0.0.1'),
    // 0: any free port (tests); the bound port is logged.
    SIGIL_GRPC_PORT: port(8443, 0),
    SIGIL_GRPC_SERVER_NAMES: z
      .string()
      .trim()
      .default('localhost,127.0.0.1')
      .transform((v) => v.split(',').map((n) => n.trim()))
      .refine(
        (names) => names.length > 0 && names.every((n) => isIP(n) !== 0 || /^(\*\.)?[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/.test(n)),
        'must be a comma-separated list of DNS names or IP addresses',
      ),
    SIGIL_GRPC_ADMISSION_RPS: positiveInt(1000),
    SIGIL_GRPC_MAX_HANDSHAKES: positiveInt(256),
    SIGIL_AGENT_AUDIENCE: z
      .string()
      .trim()
      .default('sigil')
      .refine((v) => /^[\x21-\x7e]{1,256}$/.test(v), 'must be 1-256 printable characters without spaces'),
    SIGIL_AGENT_CERT_TTL_S: positiveInt(24 * 3600).refine((v) => v >= 600 && v <= 7 * 24 * 3600, 'must be between 600 and 604800 seconds'),
    SIGIL_DATA_DIR: z.string().trim().min(1).default('.data'),
    SIGIL_ROLES: z
      .string()
      .trim()
      .default('all')
      .transform((v) => (v === 'all' ? [...ROLES] : v.split(',').map((r) => r.trim())))
      .refine((roles) => roles.length > 0 && roles.every((r) => (ROLES as readonly string[]).includes(r)), {
        message: `must be "all" or a comma-separated list of ${ROLES.join(', ')}`,
      })
      .transform((roles) => roles as Role[]),
    SIGIL_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    SIGIL_SHUTDOWN_TIMEOUT_MS: positiveInt(10_000),
    DATABASE_URL: optionalUrl(['postgres:', 'postgresql:']),
    REDIS_URL: optionalUrl(['redis:', 'rediss:']),
    // Every key and channel Sigil uses in Redis starts with this, so installations can share one.
    SIGIL_REDIS_PREFIX: z
      .string()
      .trim()
      .default('sigil')
      .refine((v) => /^[a-z0-9][a-z0-9-]{0,30}$/.test(v), 'must be 1-31 lowercase letters, digits or dashes'),
    SIGIL_PKCS11_MODULE: z.string().trim().min(1).optional(),
    SIGIL_PKCS11_TOKEN_LABEL: z.string().trim().min(1).max(32).optional(),
    SIGIL_PKCS11_PIN: z.string().min(1).optional(),
    SIGIL_PKCS11_PIN_FILE: z.string().trim().min(1).optional(),
    SIGIL_HSM_KEY_LABEL_PREFIX: z
      .string()
      .trim()
      .default('sigil')
      .refine((v) => /^[a-z0-9][a-z0-9-]{0,19}$/.test(v), 'must be 1-20 lowercase letters, digits or dashes'),
    SIGIL_HSM_POOL_SIZE: positiveInt(Math.min(4, availableParallelism())),
    // PostgreSQL connections per replica; bursts of agent work queue in front of the pool (database/work-queue.ts).
    SIGIL_DB_POOL_SIZE: positiveInt(20).refine((v) => v >= 2 && v <= 500, 'must be between 2 and 500'),
    // Enrollments and renewals allowed to wait for a database slot before they are told to retry later.
    SIGIL_AGENT_WORK_QUEUE_DEPTH: positiveInt(2_000),
    // Benchmarks only: SIGUSR2 then drops every HSM session (bench/fleet's fault suite). Off by default.
    SIGIL_FAULT_INJECTION: z.enum(['0', '1']).default('0'),
    SIGIL_RATE_LIMIT_RPS: positiveInt(50),
    SIGIL_RATE_LIMIT_BURST: positiveInt(100),
    // How often each replica logs the audit log's MACed head (an export outside the database).
    SIGIL_AUDIT_HEAD_LOG_INTERVAL_MIN: positiveInt(5),
    // Unauthenticated failures are counted and written as one audit record per kind and window.
    SIGIL_AUDIT_FAILED_ATTEMPTS_WINDOW_S: positiveInt(60),
    // Generated secrets: how often each worker replica looks for due rotations.
    SIGIL_ROTATION_SWEEP_INTERVAL_MS: positiveInt(60_000).refine((v) => v >= 100, 'must be at least 100'),
    // Seconds in a rotation "day" (rotateEveryDays). Tests shorten it; leave it alone in production.
    SIGIL_ROTATION_DAY_S: positiveInt(86_400),
    // Dynamic secrets: how often each worker replica issues, renews and revokes leases (events wake it earlier).
    SIGIL_LEASE_SWEEP_INTERVAL_MS: positiveInt(5_000).refine((v) => v >= 100, 'must be at least 100'),
    // How often the reaper drops roles with a connection's prefix that no live lease names.
    SIGIL_LEASE_REAPER_INTERVAL_MS: positiveInt(600_000).refine((v) => v >= 100, 'must be at least 100'),
    // An issue or revocation not finished after this long is taken over (the replica doing it died).
    SIGIL_LEASE_DEADLINE_S: positiveInt(600).refine((v) => v >= 2, 'must be at least 2'),
    // The shortest ttlSeconds a dynamic secret may have. Tests lower it; leave it alone in production.
    SIGIL_LEASE_MIN_TTL_S: positiveInt(300),
    // Tests only, and only with SIGIL_FAULT_INJECTION=1: the issuer stops for good after writing its
    // intents, or after creating the roles (a SIGKILL then lands between the steps of an issue).
    SIGIL_LEASE_FAULT: z.enum(['none', 'pause-after-intents', 'pause-after-roles']).default('none'),
    // Database connections: networks they may not reach besides link-local, metadata, unspecified,
    // multicast and NAT64 (always refused), and (when set) the only ones they may. Sigil's own
    // PostgreSQL and Redis are refused whatever these say (connections/engines/dial-policy.ts).
    SIGIL_CONNECTION_DENIED_NETWORKS: networks(''),
    SIGIL_CONNECTION_ALLOWED_NETWORKS: networks(''),
    // Console sessions: signed out after this long without a request, and after this long at most.
    SIGIL_CONSOLE_SESSION_IDLE_S: positiveInt(1_800).refine((v) => v >= 60, 'must be at least 60'),
    SIGIL_CONSOLE_SESSION_MAX_S: positiveInt(28_800).refine((v) => v >= 60 && v <= 7 * 86_400, 'must be between 60 and 604800'),
    SIGIL_BOOTSTRAP_ADMIN_TOKEN: z
      .string()
      .optional()
      .refine((v) => v === undefined || v.length >= 32, 'must be at least 32 characters'),
  })
  .superRefine((env, ctx) => {
    // A real HSM is configured by its module; label and a PIN then become mandatory.
    if (env.SIGIL_PKCS11_MODULE === undefined) {
      for (const name of ['SIGIL_PKCS11_TOKEN_LABEL', 'SIGIL_PKCS11_PIN', 'SIGIL_PKCS11_PIN_FILE'] as const) {
        if (env[name] !== undefined) ctx.addIssue({ code: 'custom', path: [name], message: 'is set but SIGIL_PKCS11_MODULE is not' });
      }
      return;
    }
    if (env.SIGIL_PKCS11_TOKEN_LABEL === undefined)
      ctx.addIssue({ code: 'custom', path: ['SIGIL_PKCS11_TOKEN_LABEL'], message: 'is required when SIGIL_PKCS11_MODULE is set' });
    if ((env.SIGIL_PKCS11_PIN === undefined) === (env.SIGIL_PKCS11_PIN_FILE === undefined))
      ctx.addIssue({
        code: 'custom',
        path: ['SIGIL_PKCS11_PIN'],
        message: 'exactly one of SIGIL_PKCS11_PIN or SIGIL_PKCS11_PIN_FILE is required when SIGIL_PKCS11_MODULE is set',
      });
  });

/** Where the HSM is: a PKCS#11 library, the token's label and how to get the user PIN. */
export interface HsmToken {
  module: string;
  tokenLabel: string;
  /** A PIN file is read only when the HSM is opened, so the PIN is not kept in the environment. */
  pin: { value: string } | { file: string };
}

export interface SigilConfig {
  http: { host: string; port: number };
  /**
   * serverNames: what the gRPC server certificate names (agents dial one of them). admissionPerSecond: see AdmissionRamp.
   * maxHandshakes: TLS handshakes in progress at once; see AgentListener.
   */
  grpc: { host: string; port: number; serverNames: string[]; admissionPerSecond: number; maxHandshakes: number };
  /** audience: what agents' service-account tokens must be for. certTtlSeconds: client certificate lifetime. */
  agents: { audience: string; certTtlSeconds: number };
  dataDir: string;
  roles: Role[];
  log: { level: string };
  shutdownTimeoutMs: number;
  /** `undefined` means "run the embedded default" (see embedded/). */
  databaseUrl: string | undefined;
  /** poolSize: PostgreSQL connections per replica. */
  db: { poolSize: number };
  /** workQueueDepth: enrollments/renewals that may wait for a database slot (the rest: UNAVAILABLE busy). */
  agentWork: { queueDepth: number };
  redisUrl: string | undefined;
  redisPrefix: string;
  /** `token` undefined means "use the development SoftHSM token under the data dir". */
  /** faultInjection: SIGUSR2 closes every HSM session (for the fault bench; never in production). */
  hsm: { poolSize: number; keyLabelPrefix: string; token: HsmToken | undefined; faultInjection: boolean };
  bootstrapAdminToken: string | undefined;
  /** Per API token: sustained requests per second and burst. */
  rateLimit: { perSecond: number; burst: number };
  /** headLogIntervalMinutes: period of the audit-head log line; failedAttemptsWindowSeconds: aggregation window. */
  audit: { headLogIntervalMinutes: number; failedAttemptsWindowSeconds: number };
  /** Generated secrets' schedules: sweep period, and the length of a "day" in seconds (shortened by tests). */
  rotation: { sweepIntervalMs: number; daySeconds: number };
  /** Dynamic secrets' leases: sweep and reaper periods, the in-flight deadline, the shortest TTL (lowered by tests). */
  leases: {
    sweepIntervalMs: number;
    reaperIntervalMs: number;
    deadlineSeconds: number;
    minTtlSeconds: number;
    fault: 'none' | 'pause-after-intents' | 'pause-after-roles';
  };
  /** Database connections: CIDRs they may not reach, and (non-empty) the only ones they may. */
  connections: { deniedNetworks: string[]; allowedNetworks: string[] };
  /** Console sessions: idle timeout and absolute lifetime, in seconds. */
  console: { sessionIdleSeconds: number; sessionMaxSeconds: number };
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    readonly reason: string,
  ) {
    super(`invalid configuration: ${variable} ${reason}`);
    this.name = 'ConfigError';
  }
}

/** Parses the environment; throws a ConfigError naming the first bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): SigilConfig {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const variable = String(issue.path[0] ?? 'environment');
    const raw = env[variable];
    const shown = raw !== undefined && !SECRET_VARIABLES.has(variable) ? ` (got ${JSON.stringify(raw)})` : '';
    throw new ConfigError(variable, `${issue.message}${shown}`);
  }
  const e = parsed.data;
  const token: HsmToken | undefined =
    e.SIGIL_PKCS11_MODULE === undefined
      ? undefined
      : {
          module: e.SIGIL_PKCS11_MODULE,
          tokenLabel: e.SIGIL_PKCS11_TOKEN_LABEL!,
          pin: e.SIGIL_PKCS11_PIN !== undefined ? { value: e.SIGIL_PKCS11_PIN } : { file: e.SIGIL_PKCS11_PIN_FILE! },
        };
  return {
    http: { host: e.SIGIL_HTTP_HOST, port: e.SIGIL_HTTP_PORT },
    grpc: {
      host: e.SIGIL_GRPC_HOST,
      port: e.SIGIL_GRPC_PORT,
      serverNames: e.SIGIL_GRPC_SERVER_NAMES,
      admissionPerSecond: e.SIGIL_GRPC_ADMISSION_RPS,
      maxHandshakes: e.SIGIL_GRPC_MAX_HANDSHAKES,
    },
    agents: { audience: e.SIGIL_AGENT_AUDIENCE, certTtlSeconds: e.SIGIL_AGENT_CERT_TTL_S },
    dataDir: path.resolve(e.SIGIL_DATA_DIR),
    roles: e.SIGIL_ROLES,
    log: { level: e.SIGIL_LOG_LEVEL },
    shutdownTimeoutMs: e.SIGIL_SHUTDOWN_TIMEOUT_MS,
    databaseUrl: e.DATABASE_URL,
    db: { poolSize: e.SIGIL_DB_POOL_SIZE },
    agentWork: { queueDepth: e.SIGIL_AGENT_WORK_QUEUE_DEPTH },
    redisUrl: e.REDIS_URL,
    redisPrefix: e.SIGIL_REDIS_PREFIX,
    hsm: {
      poolSize: e.SIGIL_HSM_POOL_SIZE,
      keyLabelPrefix: e.SIGIL_HSM_KEY_LABEL_PREFIX,
      token,
      faultInjection: e.SIGIL_FAULT_INJECTION === '1',
    },
    bootstrapAdminToken: e.SIGIL_BOOTSTRAP_ADMIN_TOKEN,
    rateLimit: { perSecond: e.SIGIL_RATE_LIMIT_RPS, burst: e.SIGIL_RATE_LIMIT_BURST },
    audit: {
      headLogIntervalMinutes: e.SIGIL_AUDIT_HEAD_LOG_INTERVAL_MIN,
      failedAttemptsWindowSeconds: e.SIGIL_AUDIT_FAILED_ATTEMPTS_WINDOW_S,
    },
    rotation: { sweepIntervalMs: e.SIGIL_ROTATION_SWEEP_INTERVAL_MS, daySeconds: e.SIGIL_ROTATION_DAY_S },
    leases: {
      sweepIntervalMs: e.SIGIL_LEASE_SWEEP_INTERVAL_MS,
      reaperIntervalMs: e.SIGIL_LEASE_REAPER_INTERVAL_MS,
      deadlineSeconds: e.SIGIL_LEASE_DEADLINE_S,
      minTtlSeconds: e.SIGIL_LEASE_MIN_TTL_S,
      fault: e.SIGIL_LEASE_FAULT,
    },
    connections: { deniedNetworks: e.SIGIL_CONNECTION_DENIED_NETWORKS, allowedNetworks: e.SIGIL_CONNECTION_ALLOWED_NETWORKS },
    console: {
      sessionIdleSeconds: e.SIGIL_CONSOLE_SESSION_IDLE_S,
      sessionMaxSeconds: Math.max(e.SIGIL_CONSOLE_SESSION_MAX_S, e.SIGIL_CONSOLE_SESSION_IDLE_S),
    },
  };
}
