import { createHash } from 'node:crypto';
import type { KubeClient } from '../kube/kube-client.js';

/** The pod a verified projected service-account token was issued for. */
export interface PodIdentity {
  namespace: string;
  serviceAccount: string;
  pod: string;
  podUid: string;
}

/** Why a token was refused: the `reason` label of sigil_agent_injection_refusals_total and the pod's log line. */
export type TokenRefusal =
  'token-missing' | 'token-invalid' | 'token-not-service-account' | 'token-not-pod-bound' | 'token-review-failed' | 'agent-busy';

/** TokenReviews in flight at once: beyond, a fetch is refused (503) instead of queueing on the API server. */
const MAX_REVIEWS_IN_FLIGHT = 16;
/** How long a verified token is trusted without asking again (an init container and its sidecar ask twice). */
const REVIEW_CACHE_MS = 10_000;
const REVIEW_CACHE_ENTRIES = 4_096;

interface TokenReview {
  status?: {
    authenticated?: boolean;
    audiences?: string[];
    error?: string;
    user?: { username?: string; extra?: Record<string, string[]> };
  };
}

const SA_USER = /^system:serviceaccount:([a-z0-9-]{1,63}):([a-z0-9.-]{1,253})$/;
const POD_NAME = 'authentication.kubernetes.io/pod-name';
const POD_UID = 'authentication.kubernetes.io/pod-uid';

export class TokenRefused extends Error {
  constructor(readonly reason: TokenRefusal) {
    super(reason);
  }
}

/**
 * Verifies a pod's projected token with a TokenReview against this cluster's API server (which
 * checks signature, expiry, audience and that the bound pod still exists), then insists on a
 * service-account token bound to a pod and issued for Sigil's audience only.
 */
export class TokenReviewer {
  private inFlight = 0;
  /** sha256(token) → the identity it was verified as, until `until`. */
  private readonly verified = new Map<string, { who: PodIdentity; until: number }>();

  constructor(
    private readonly kube: KubeClient,
    private readonly audience: string,
  ) {}

  async review(token: string | undefined): Promise<PodIdentity> {
    if (!token) throw new TokenRefused('token-missing');
    const key = createHash('sha256').update(token).digest('base64');
    const hit = this.verified.get(key);
    if (hit && hit.until > Date.now()) return hit.who;
    if (this.inFlight >= MAX_REVIEWS_IN_FLIGHT) throw new TokenRefused('agent-busy');
    this.inFlight += 1;
    try {
      const who = await this.ask(token);
      if (this.verified.size >= REVIEW_CACHE_ENTRIES) this.verified.clear();
      this.verified.set(key, { who, until: Date.now() + REVIEW_CACHE_MS });
      return who;
    } finally {
      this.inFlight -= 1;
    }
  }

  private async ask(token: string): Promise<PodIdentity> {
    let review: TokenReview;
    try {
      review = await this.kube.request<TokenReview>('POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        spec: { token, audiences: [this.audience] },
      });
    } catch {
      throw new TokenRefused('token-review-failed');
    }
    const s = review.status;
    // The API server intersects the audiences asked for with the token's; an empty answer means "not for Sigil".
    if (!s?.authenticated || !s.audiences?.includes(this.audience)) throw new TokenRefused('token-invalid');
    const m = SA_USER.exec(s.user?.username ?? '');
    if (!m) throw new TokenRefused('token-not-service-account');
    const pod = s.user?.extra?.[POD_NAME]?.[0];
    const podUid = s.user?.extra?.[POD_UID]?.[0];
    if (!pod || !podUid) throw new TokenRefused('token-not-pod-bound');
    return { namespace: m[1]!, serviceAccount: m[2]!, pod, podUid };
  }
}
