import type { DesiredSecret, Grant } from '@sigil/agent-protocol';
import type { Logger } from '@sigil/logging';
import { isConsumer, stampOf, type InjectionStore } from './injection-store.js';
import { TokenRefused, type PodIdentity, type TokenRefusal, type TokenReviewer } from './token-review.js';

export type Refusal = TokenRefusal | 'app-not-published' | 'not-a-consumer' | 'namespace-not-served' | 'ambiguous-app' | 'decrypt-failed';

/** HTTP status of each refusal, and what the pod's log says (never a value, never the token). */
export const REFUSALS: Record<Refusal, { status: number; message: string }> = {
  'token-missing': { status: 401, message: 'no service-account token was presented' },
  'token-invalid': { status: 401, message: 'the token is not valid for Sigil (expired, revoked, wrong audience, or its pod is gone)' },
  'token-not-service-account': { status: 401, message: 'the token is not a service-account token' },
  'token-not-pod-bound': { status: 401, message: 'the token is not bound to a pod (use a projected service-account token)' },
  'token-review-failed': { status: 503, message: 'the agent could not verify the token with the API server (TokenReview failed)' },
  'agent-busy': { status: 503, message: 'the agent is verifying too many tokens at once; retry' },
  'app-not-published': { status: 404, message: 'no inject-mode app of this name is published to this cluster' },
  'not-a-consumer': { status: 403, message: "this pod's namespace and service account are not among the app's consumers" },
  'namespace-not-served': { status: 403, message: 'this agent does not serve the namespace of this pod' },
  'ambiguous-app': { status: 409, message: 'several projects publish an app of this name to this pod: it cannot be told apart' },
  'decrypt-failed': { status: 500, message: 'the agent could not open a secret of this app' },
};

export class InjectionRefused extends Error {
  constructor(readonly reason: Refusal) {
    super(REFUSALS[reason].message);
  }
}

/** One secret as the injector receives it. The values exist only in this answer. */
export interface InjectedSecret {
  name: string;
  version: number;
  type: string;
  /** Key → base64 of the value. */
  data: Record<string, string>;
}

export interface InjectionAnswer {
  app: string;
  /** Changes whenever what the app holds changes: the sidecar's `known` for its long poll. */
  stamp: string;
  secrets: InjectedSecret[];
}

export interface InjectionServiceOptions {
  store: InjectionStore;
  reviewer: TokenReviewer;
  /** Decrypts one held entry now; the buffers are zeroed after the answer is built. */
  open: (s: DesiredSecret) => Map<string, Buffer>;
  serves: (namespace: string) => boolean;
  logger: Logger;
  refused: (reason: Refusal) => void;
  granted: () => void;
}

const MAX_PENDING_GRANTS = 10_000;

/**
 * Decides what a pod may receive and hands it over: the token is verified (TokenReview), the
 * pod's namespace and service account must be among the app's consumers, and the values are
 * decrypted for this answer only. Every grant is counted for the centre (no values).
 */
export class InjectionService {
  private pending = new Map<string, Grant>();

  constructor(private readonly opts: InjectionServiceOptions) {}

  /** Verifies the bearer token; the identity is reused for a long poll's later answer. */
  async identify(token: string | undefined): Promise<PodIdentity> {
    try {
      return await this.opts.reviewer.review(token);
    } catch (err) {
      if (err instanceof TokenRefused) throw this.refuse(err.reason, undefined);
      throw err;
    }
  }

  /** The app's entries this pod may have, or a refusal; nothing is decrypted. */
  authorize(who: PodIdentity, app: string): { entries: DesiredSecret[]; stamp: string } {
    if (!this.opts.serves(who.namespace)) throw this.refuse('namespace-not-served', who, app);
    const entries = this.opts.store.forApp(app);
    if (entries.length === 0) throw this.refuse('app-not-published', who, app);
    const allowed = entries.filter((s) => isConsumer(s.consumers, who.namespace, who.serviceAccount));
    if (allowed.length === 0) throw this.refuse('not-a-consumer', who, app);
    if (new Set(allowed.map((s) => s.projectId)).size > 1) throw this.refuse('ambiguous-app', who, app);
    // Of this pod's entries only: another project's app of the same name never wakes it.
    return { entries: allowed, stamp: stampOf(allowed) };
  }

  /** Decrypts the authorized entries into an answer and records the grant. */
  answer(who: PodIdentity, app: string, authorized: { entries: DesiredSecret[]; stamp: string }): InjectionAnswer {
    const secrets: InjectedSecret[] = [];
    for (const s of authorized.entries) {
      let values: Map<string, Buffer>;
      try {
        values = this.opts.open(s);
      } catch {
        throw this.refuse('decrypt-failed', who, app);
      }
      const data: Record<string, string> = {};
      for (const [k, v] of values) {
        data[k] = v.toString('base64');
        v.fill(0);
      }
      secrets.push({ name: s.secret, version: s.version, type: s.type, data });
    }
    for (const s of authorized.entries) this.record(s, who);
    this.opts.granted();
    this.opts.logger.info(
      { app, namespace: who.namespace, serviceAccount: who.serviceAccount, pod: who.pod, secrets: secrets.length },
      'injected values into a pod',
    );
    return { app, stamp: authorized.stamp, secrets };
  }

  /** Resolves at the next change of what any app holds, or after `ms` (false). */
  waitForChange(ms: number, signal?: AbortSignal): Promise<boolean> {
    return this.opts.store.waitForChange(ms, signal);
  }

  /** The grants since the last call, coalesced per secret and pod (the session sends them). */
  takeGrants(): Grant[] {
    const out = [...this.pending.values()];
    this.pending = new Map();
    return out;
  }

  /** Grants that could not be sent go back (bounded). */
  returnGrants(grants: Grant[]): void {
    for (const g of grants) if (this.pending.size < MAX_PENDING_GRANTS) this.pending.set(grantKey(g), g);
  }

  private record(s: DesiredSecret, who: PodIdentity): void {
    const g: Grant = {
      secretId: s.secretId,
      version: s.version,
      namespace: who.namespace,
      serviceAccount: who.serviceAccount,
      pod: who.pod,
      count: 1,
      lastAt: new Date(),
    };
    const k = grantKey(g);
    const before = this.pending.get(k);
    if (before) {
      before.count += 1;
      before.version = s.version;
      before.lastAt = g.lastAt;
    } else if (this.pending.size < MAX_PENDING_GRANTS) this.pending.set(k, g);
  }

  private refuse(reason: Refusal, who: PodIdentity | undefined, app?: string): InjectionRefused {
    this.opts.refused(reason);
    this.opts.logger.warn(
      { reason, app, namespace: who?.namespace, serviceAccount: who?.serviceAccount, pod: who?.pod },
      'refused an injection',
    );
    return new InjectionRefused(reason);
  }
}

const grantKey = (g: Grant) => `${g.secretId}|${g.namespace}|${g.serviceAccount}|${g.pod}`;
