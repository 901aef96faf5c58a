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

export type ToSim =
  | { type: 'init'; address: string; caPem: string; deliveryKeys: DeliveryKey[]; agents: SimAgentSpec[]; stateFile: string }
  | { type: 'enroll'; concurrency: number }
  | { type: 'watch' }
  | { type: 'expect'; expectation: Expectation }
  | { type: 'stop' };

export type FromSim =
  | { type: 'ready'; restored: number }
  | { type: 'enroll-progress'; ok: number; failed: number; retries: number }
  | { type: 'enroll-done'; ok: number; failed: number; retries: number; errors: string[]; latenciesMs: number[] }
  | { type: 'watching'; connected: number; rejected: number }
  | { type: 'met'; phase: string; agents: number[]; lastAt: number }
  | { type: 'stats'; syncs: number; syncErrors: number; rssMiB: number; lastError?: string };

export const now = (): number => performance.timeOrigin + performance.now();
