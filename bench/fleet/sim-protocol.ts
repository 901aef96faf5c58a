/**
 * Messages between the fleet bench (parent) and its simulated-agent processes (children, over
 * the Node IPC channel). Times are epoch milliseconds with sub-millisecond precision
 * (performance.timeOrigin + performance.now()), comparable across processes on one machine.
 */

export interface DeliveryKey {
  privateKeyPem: string;
  publicKeyDerB64: string;
}

export interface SimAgentSpec {
  cluster: string;
  token: string;
}

/** What every agent must hold (in its in-memory Kubernetes) for a phase to count as acked. */
export interface Expectation {
  phase: string;
  /** Secrets the agent must hold for `namespace` (0 = none left). */
  secrets: number;
  namespace: string;
  /** A secret that must be at least at this version. */
  version?: { name: string; atLeast: number };
}

/**
 * Every agent logs in to a database with the URL its Secret `namespace/name` holds under `key`
 * (a dynamic secret's credential), `concurrency` logins at once per process, and runs `sql`.
 */
export interface LoginCheck {
  namespace: string;
  name: string;
  key: string;
  sql: string;
  concurrency: number;
}

/** What the logins of one process found; no value, only role names (not secret) and error kinds. */
export interface LoginReport {
  ok: number;
  failed: number;
  /** Agents whose Secret was missing or lacked the key. */
  missing: number;
  /** Per agent (by index in the process): its cluster and the role it logged in as ('' if none). */
  clusters: string[];
  usernames: string[];
  /** Failures by kind (SQLSTATE or error code and message, role and cluster names left out) → how many. */
  errorKinds: Record<string, number>;
}

export type ToSim =
  | {
      type: 'init';
      address: string;
      caPem: string;
      deliveryKeys: DeliveryKey[];
      agents: SimAgentSpec[];
      stateFile: string;
      /** Keep the decrypted values in the in-memory Kubernetes (for `login`); otherwise opened and dropped. */
      keepValues?: boolean;
    }
  | { type: 'enroll'; concurrency: number }
  /** Open every agent's Sync stream (each reconnects on its own from then on). */
  | { type: 'watch' }
  | { type: 'expect'; expectation: Expectation }
  /** Answer with a `generations` message. */
  | { type: 'report' }
  | { type: 'login'; check: LoginCheck }
  | { type: 'stop' };

export type FromSim =
  | { type: 'ready'; restored: number }
  | { type: 'enroll-progress'; ok: number; failed: number; retries: number }
  | {
      type: 'enroll-done';
      ok: number;
      failed: number;
      retries: number;
      errors: string[];
      /** Failures by kind (gRPC status and message, cluster names left out) → how many. */
      errorKinds: Record<string, number>;
      latenciesMs: number[];
    }
  /** Streams up and admission-ramp refusals, every 500 ms. */
  | { type: 'watching'; connected: number; rejected: number }
  | { type: 'met'; phase: string; agents: number[]; lastAt: number }
  | {
      type: 'stats';
      syncs: number;
      syncErrors: number;
      rssMiB: number;
      lastError?: string;
      /** Desired states received (assembled, all parts), since the process started. */
      states: number;
      /** Of those, complete ones (base_generation 0). */
      completeStates: number;
    }
  /** Per agent (by index in the process): cluster name and the generation it applied and acked. */
  | { type: 'generations'; clusters: string[]; applied: string[] }
  | ({ type: 'login-done' } & LoginReport);

/**
 * What the process-level handlers of sim-agents.ts need from the SimAgent class (whose
 * internals implement the Sync protocol, libs/agent-sync). Kept here so the class can be
 * rewritten without the bench's IPC changing.
 */
export interface SimAgentContract {
  readonly spec: SimAgentSpec;
  /** Set after enrollment, or restored from the state file by a restarted process. */
  identity: object | undefined;
  /** Enrolls with the spec's one-time token; `index` picks the shared delivery key. */
  enroll(index: number): Promise<{ retries: number }>;
  /** Opens the Sync stream; from then on the agent reconnects with backoff on its own. */
  watch(): void;
  /** Counts this agent for the current expectation once what it applied and acked satisfies it. */
  check(): void;
  /** The value of `key` of the Secret `namespace/name` it holds (only with keepValues). */
  value(namespace: string, name: string, key: string): string | undefined;
  stop(): void;
  /** The Sync stream is open (accepted by the control plane). */
  readonly connected: boolean;
  /** How often the admission ramp refused this agent's stream. */
  readonly rejected: number;
  /** The generation last applied and acknowledged (0n: none). */
  readonly appliedGeneration: bigint;
  /** Desired states received and assembled (complete or delta). */
  readonly statesReceived: number;
  /** Of those, complete states. */
  readonly completeStatesReceived: number;
}

export const now = (): number => performance.timeOrigin + performance.now();
