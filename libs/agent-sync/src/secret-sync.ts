import type { KeyObject } from 'node:crypto';
import { SecretFailureReason, SecretState, type DesiredSecret, type SecretRef, type SecretStatus } from '@sigil/agent-protocol';
import { decodeSecretPayload, openClusterKeyEnvelope, openSecretEnvelope } from '@sigil/envelope';
import type { AssembledState } from './assembler.js';
import { byTarget, resolveContested, sourceOf, targetKey } from './ownership.js';
import type { SyncLogger } from './session.js';

/** A secret's values, obtainable only at the moment of writing. */
export interface SecretValues {
  /** Decrypts now. Every buffer it returns is zeroed as soon as the write returns. */
  open: () => Map<string, Buffer>;
  /**
   * Whether a Secret this agent wrote for `owner` may pass to this secret: only when the current
   * complete desired state no longer names `owner` (an orphan of an earlier state).
   */
  ownerRetired: (owner: string) => boolean;
}

export type WriteResult =
  | { state: 'applied'; changed: boolean }
  | { state: 'conflict'; message: string }
  | { state: 'failed'; reason: SecretFailureReason; message: string };

/**
 * Where the Secrets go: Kubernetes for the agent, memory for the test agent and the bench's
 * simulated agents. Everything else (what to write, what to delete, what to report) is SecretSync's.
 */
export interface SecretSink {
  /** Namespaces outside it are refused (NamespaceNotServed) without asking write(). Default: all. */
  serves?(namespace: string): boolean;
  /** The source (`sigil.dev/source`) that owns a target now; decides contested targets. Default: none. */
  owner?(target: SecretRef): Promise<string | undefined>;
  /** Creates, or updates if different, one Secret. A throw is reported as DecryptFailed. */
  write(secret: DesiredSecret, values: SecretValues): Promise<WriteResult>;
  /** Every Secret this sink manages (candidates for deletion). */
  listManaged(): Promise<SecretRef[]>;
  delete(target: SecretRef): Promise<'deleted' | 'absent' | 'conflict'>;
}

export interface SecretSyncOptions {
  sink: SecretSink;
  /** The agent's RSA delivery private key, which opens the cluster-key envelopes. */
  deliveryKey: string | KeyObject;
  /** Runs after the writes and before the deletions and the report (the e2e tests' sync gate). */
  afterWrites?(): Promise<void>;
  logger?: SyncLogger;
}

export interface SyncOutcome {
  /** What the acknowledgement carries (the rule in agent.proto's Applied). */
  statuses: SecretStatus[];
  /** Secrets whose target was created or changed. */
  changed: DesiredSecret[];
  deleted: SecretRef[];
}

export interface RepairOutcome {
  status: SecretStatus;
  changed: boolean;
  /** Whether the control plane should hear of it: it is not applied, or it was not before. */
  report: boolean;
}

/**
 * The sync logic shared by the agent, the test agent and the bench's simulated agents: given a
 * complete assembled desired state, write what changed, retry what is not applied, delete what is
 * no longer wanted, and build the statuses: every secret the state carried in full, every Secret
 * deleted, and every secret not currently applied. Values are decrypted only inside a write.
 */
export class SecretSync {
  /** The entry each target is written from, as of the last state applied. */
  private wanted = new Map<string, DesiredSecret>();
  /** Every source the last state names (hand-over: a source it does not name is retired). */
  private sources = new Set<string>();
  /** Targets whose last write did not end applied (retried with every state, reported until then). */
  private readonly failing = new Set<string>();
  private keys = new Map<number, Buffer>();
  private keyEnvelopes: readonly Buffer[] = [];
  private readonly ownerRetired = (owner: string) => !this.sources.has(owner);

  constructor(private readonly opts: SecretSyncOptions) {}

  /** The desired entry of each target (`namespace/name`), for drift repair. */
  get desired(): ReadonlyMap<string, DesiredSecret> {
    return this.wanted;
  }

  /** Whether the target's last write ended applied. */
  applied(k: string): boolean {
    return this.wanted.has(k) && !this.failing.has(k);
  }

  async apply(state: AssembledState): Promise<SyncOutcome> {
    this.openKeys(state.clusterKeyEnvelopes);
    const { sink } = this.opts;
    const statuses: SecretStatus[] = [];
    const changed: DesiredSecret[] = [];
    const targets = byTarget(state.secrets.values());
    const previous = this.wanted;
    const wanted = new Map<string, DesiredSecret>();
    const sources = new Set<string>();
    for (const s of state.secrets.values()) sources.add(sourceOf(s));
    this.sources = sources;
    for (const [k, entries] of targets) {
      const target = entries[0]!.target!;
      if (sink.serves && !sink.serves(target.namespace)) {
        this.opts.logger?.warn({ target: k }, 'a desired Secret is outside the namespaces this agent serves; not written');
        for (const e of entries)
          statuses.push(
            statusOf(
              e,
              SecretState.SECRET_STATE_FAILED,
              SecretFailureReason.NamespaceNotServed,
              `this agent does not serve namespace ${target.namespace}`,
            ),
          );
        continue;
      }
      if (entries.length === 1) {
        wanted.set(k, entries[0]!);
        continue;
      }
      let owner: string | undefined;
      try {
        owner = await sink.owner?.(target);
      } catch {
        owner = undefined; // unknown: refuse them all this time
      }
      const { kept, refused } = resolveContested(entries, owner);
      this.opts.logger?.warn({ target: k, entries: entries.length, kept: kept !== undefined }, 'several desired Secrets name one target');
      for (const e of refused)
        statuses.push(
          statusOf(e, SecretState.SECRET_STATE_CONFLICT, SecretFailureReason.Conflict, 'another Sigil secret targets the same Secret'),
        );
      if (kept) wanted.set(k, kept);
    }
    this.wanted = wanted;
    for (const k of this.failing) if (!wanted.has(k)) this.failing.delete(k);
    for (const [k, s] of wanted) {
      // A delta's unchanged entries are the very objects held before: nothing to do for them,
      // unless their last write failed or the target's entry changed.
      const carried = state.baseGeneration === 0n || state.carried.has(s) || previous.get(k) !== s || this.failing.has(k);
      if (!carried) continue;
      const r = await this.write(k, s);
      statuses.push(r.status);
      if (r.changed) changed.push(s);
    }
    await this.opts.afterWrites?.();
    // Only ever on a complete state: a target the state names, even one refused, is not deleted.
    const deleted: SecretRef[] = [];
    for (const m of await sink.listManaged()) {
      const k = targetKey(m.namespace, m.name);
      if (targets.has(k)) continue;
      const outcome = await sink.delete(m);
      if (outcome === 'deleted') {
        deleted.push(m);
        this.opts.logger?.info({ target: k }, 'deleted a Secret that is no longer published');
      }
      statuses.push({
        target: { namespace: m.namespace, name: m.name },
        secretId: '',
        version: 0,
        generation: state.generation,
        state: SecretState.SECRET_STATE_DELETED,
        reason: '',
        message: '',
      });
    }
    return { statuses, changed, deleted };
  }

  /** Re-checks one target against the last state (a drift event); undefined when it is not wanted. */
  async repair(k: string): Promise<RepairOutcome | undefined> {
    const s = this.wanted.get(k);
    if (!s) return undefined;
    const wasFailing = this.failing.has(k);
    const r = await this.write(k, s);
    const applied = r.status.state === SecretState.SECRET_STATE_APPLIED;
    return { ...r, report: !applied || wasFailing };
  }

  private async write(k: string, s: DesiredSecret): Promise<{ status: SecretStatus; changed: boolean }> {
    const opened: Array<Map<string, Buffer>> = [];
    const values: SecretValues = {
      open: () => {
        const v = this.open(s);
        opened.push(v);
        return v;
      },
      ownerRetired: this.ownerRetired,
    };
    let r: WriteResult;
    try {
      r = await this.opts.sink.write(s, values);
    } catch (err) {
      this.opts.logger?.warn({ target: k, error: (err as Error).name }, 'could not open or write a Secret');
      r = { state: 'failed', reason: SecretFailureReason.DecryptFailed, message: '' };
    } finally {
      for (const v of opened) for (const b of v.values()) b.fill(0);
    }
    if (r.state === 'applied') {
      this.failing.delete(k);
      return { status: statusOf(s, SecretState.SECRET_STATE_APPLIED, '', ''), changed: r.changed };
    }
    this.failing.add(k);
    return r.state === 'conflict'
      ? { status: statusOf(s, SecretState.SECRET_STATE_CONFLICT, SecretFailureReason.Conflict, r.message), changed: false }
      : { status: statusOf(s, SecretState.SECRET_STATE_FAILED, r.reason, r.message), changed: false };
  }

  /**
   * Decrypts one secret of the current state with the cluster keys held now. The caller zeroes
   * every returned buffer once it is done with it (injection decrypts per request this way).
   */
  open(s: DesiredSecret): Map<string, Buffer> {
    return openDesiredSecret(s, this.keys);
  }

  /** The cluster keys of a state; an envelope seen before is not opened again (RSA is the cost). */
  private openKeys(envelopes: readonly Buffer[]): void {
    if (envelopes.length === this.keyEnvelopes.length && envelopes.every((e, i) => e.equals(this.keyEnvelopes[i]!))) return;
    const keys = new Map<number, Buffer>();
    for (const e of envelopes) {
      const k = openClusterKeyEnvelope(this.opts.deliveryKey, e);
      keys.set(k.version, k.key);
    }
    for (const old of this.keys.values()) if (![...keys.values()].includes(old)) old.fill(0);
    this.keys = keys;
    this.keyEnvelopes = envelopes;
  }
}

/** `reason`: empty when applied or deleted. */
const statusOf = (s: DesiredSecret, state: SecretState, reason: SecretFailureReason | '', message: string): SecretStatus => ({
  target: s.target,
  secretId: s.secretId,
  version: s.version,
  generation: s.generation,
  state,
  reason,
  message,
});

/** Decrypts one desired secret with `clusterKeys` (by version); the caller zeroes the returned buffers. */
export function openDesiredSecret(s: DesiredSecret, clusterKeys: ReadonlyMap<number, Buffer>): Map<string, Buffer> {
  const payload = openSecretEnvelope(s.envelope, clusterKeys, {
    projectId: s.projectId,
    app: s.app,
    secret: s.secret,
    secretId: s.secretId,
    version: s.version,
  });
  try {
    return decodeSecretPayload(payload);
  } finally {
    payload.fill(0);
  }
}
