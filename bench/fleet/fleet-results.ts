import type { EnrollResult, Registration, SyncCheck } from './fleet.js';
import type { Floor } from './floors.js';

/** What a bench/fleet run writes to bench/results/fleet-<N>[-r<replicas>].json, and the issue's targets. */

export const TARGETS = {
  enrollMs: 30_000,
  rssMiB: 800,
  publishMs: 10_000,
  publishPerHsmFloor: 1.5,
  rotateMs: 3_000,
  unpublishMs: 3_000,
  reconnectMs: 30_000,
  cpuPerClusterChangeMs: 0.5,
};

export interface Phase {
  name: string;
  ackedMs: number;
  restMs: number;
  /** CPU milliseconds per process role during the phase. */
  cpuMs: Record<string, number>;
  /** Control plane + PostgreSQL CPU ms per cluster (for a change: per cluster per change). */
  cpuPerClusterMs: number;
}

export interface Reconnect {
  /** From SIGTERM until every agent was connected and at its built generation. */
  ms: number;
  /** The part of it the control plane took to stop and be ready again. */
  restartMs: number;
  /** From ready until every agent was in sync. */
  afterReadyMs: number;
  /** Streams up right after the restarted control plane was ready (they had all dropped). */
  connectedAtReady: number;
  /** Desired states the agents received during the phase; the goal is 0. */
  statesResent: number;
  completeStatesResent: number;
  admissionRetries: number;
  /** Connections the restarted control plane took: sessions resumed, full handshakes, resets at the handshake bound. */
  tls: { resumed: number; full: number; refused: number };
  check: SyncCheck;
  cpuMs: Record<string, number>;
}

/** bench/results name of a run: fleet-10000, or fleet-10000-r2 with two replicas. */
export const resultName = (agents: number, replicas: number): string => `fleet-${agents}${replicas > 1 ? `-r${replicas}` : ''}`;

/** The JSON of one run (besides the machine description). */
export interface FleetResult {
  agents: number;
  secrets: number;
  processes: number;
  replicas: number;
  registration: Registration;
  enroll: EnrollResult;
  streamsMs: number;
  footprint: { controlPlaneRssMiB: number[]; simulatorRssMiB: number };
  phases: Phase[];
  reconnect: Reconnect;
  floors: Floor[];
}
