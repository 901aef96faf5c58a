import type { DesiredSecret, DesiredState } from '@sigil/agent-protocol';

/**
 * A desired state as the agent acts on it: every secret of one generation in full (a delta's
 * unchanged entries resolved from the held state), assembled from every part and checked.
 */
export interface AssembledState {
  generation: bigint;
  /** 0: it arrived complete. Otherwise the delta's base (the generation held when it arrived). */
  baseGeneration: bigint;
  /** Every secret of the generation, by secret id. */
  secrets: ReadonlyMap<string, DesiredSecret>;
  /** The secrets that arrived in full (a delta's changed ones; all of them in a complete state). */
  carried: ReadonlySet<DesiredSecret>;
  clusterKeyEnvelopes: readonly Buffer[];
}

/** What the agent holds: the last complete desired state it applied and acknowledged. */
export interface HeldState {
  generation: bigint;
  secrets: ReadonlyMap<string, DesiredSecret>;
  clusterKeyEnvelopes: readonly Buffer[];
}

export type FeedResult =
  | { kind: 'partial' }
  | { kind: 'complete'; state: AssembledState }
  /** The parts cannot be assembled against what is held; `complete`: even a complete state failed its check. */
  | { kind: 'resync'; reason: ResyncReason; complete: boolean }
  /** Parts of a sequence already given up: ignored until the next part 0. */
  | { kind: 'ignored' };

export type ResyncReason = 'base-not-held' | 'unchanged-not-held' | 'count-mismatch' | 'duplicate-secret' | 'out-of-sequence';

const PARTIAL: FeedResult = { kind: 'partial' };
const IGNORED: FeedResult = { kind: 'ignored' };

/**
 * Assembles the parts of one generation (part 0..n, the last with more = false) into a complete
 * desired state. A part 0 starts over, abandoning an unfinished sequence. A delta is resolved
 * against the held state: its base must be the held generation, and every unchanged entry a
 * secret held at that id, version and generation; the assembled state must hold exactly
 * secret_count secrets. Anything else asks for a resync. Parts are not copied: the assembled
 * state references the decoded messages' secrets.
 */
export class StateAssembler {
  private generation = 0n;
  private base = 0n;
  private nextPart = 0;
  /** Undefined: no sequence in progress (none started, finished, or given up). */
  private secrets: Map<string, DesiredSecret> | undefined;
  private carried: Set<DesiredSecret> | undefined;
  private keys: Buffer[] = [];

  /** Forgets an unfinished sequence (the stream ended). */
  reset(): void {
    this.secrets = undefined;
    this.carried = undefined;
    this.keys = [];
    this.nextPart = 0;
  }

  feed(part: DesiredState, held: HeldState | undefined): FeedResult {
    if (part.part === 0) {
      this.reset();
      this.generation = part.generation;
      this.base = part.baseGeneration;
      if (this.base !== 0n && this.base !== held?.generation) return this.giveUp('base-not-held');
      this.secrets = new Map();
      this.carried = new Set();
      this.keys = part.clusterKeyEnvelopes.length > 0 ? part.clusterKeyEnvelopes : [...(held?.clusterKeyEnvelopes ?? [])];
    } else if (!this.secrets) {
      return this.nextPart === -1 ? IGNORED : this.giveUp('out-of-sequence');
    } else if (part.generation !== this.generation || part.part !== this.nextPart) {
      return this.giveUp('out-of-sequence');
    }
    const secrets = this.secrets;
    const carried = this.carried!;
    for (const s of part.secrets) {
      if (secrets.has(s.secretId)) return this.giveUp('duplicate-secret');
      secrets.set(s.secretId, s);
      carried.add(s);
    }
    for (const u of part.unchanged) {
      const h = this.base === 0n ? undefined : held?.secrets.get(u.secretId);
      if (!h || h.version !== u.version || h.generation !== u.generation) return this.giveUp('unchanged-not-held');
      if (secrets.has(u.secretId)) return this.giveUp('duplicate-secret');
      secrets.set(u.secretId, h);
    }
    if (part.more) {
      this.nextPart = part.part + 1;
      return PARTIAL;
    }
    if (secrets.size !== part.secretCount) return this.giveUp('count-mismatch');
    const state: AssembledState = {
      generation: this.generation,
      baseGeneration: this.base,
      secrets,
      carried,
      clusterKeyEnvelopes: this.keys,
    };
    this.reset();
    return { kind: 'complete', state };
  }

  /** Drops the sequence; its remaining parts are ignored until a part 0 (the resync's answer). */
  private giveUp(reason: ResyncReason): FeedResult {
    const complete = this.base === 0n && reason !== 'out-of-sequence' && reason !== 'base-not-held';
    this.reset();
    this.nextPart = -1;
    return { kind: 'resync', reason, complete };
  }
}
