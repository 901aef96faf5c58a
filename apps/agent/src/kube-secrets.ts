import { createHash, timingSafeEqual } from 'node:crypto';
import { SecretFailureReason } from '@sigil/agent-protocol';
import { KubeError, type KubeClient } from './kube/kube-client.js';
import type { List, Secret } from './kube/types.js';
import {
  ANNOTATION_CHECKSUM,
  ANNOTATION_CLUSTER,
  ANNOTATION_GENERATION,
  ANNOTATION_SECRET_ID,
  ANNOTATION_SOURCE,
  ANNOTATION_VERSION,
  LABEL_APP,
  MANAGED_BY,
  MANAGED_BY_SIGIL,
} from './labels.js';

/** One Secret to write, with a way to get its values that is called only at the moment of writing. */
export interface SecretToWrite {
  namespace: string;
  name: string;
  type: string;
  app: string;
  source: string;
  secretId: string;
  version: number;
  generation: bigint;
  envelope: Buffer;
  /** Decrypts just in time; the agent zeroes the buffers right after the write. */
  open(): Map<string, Buffer>;
  /** The Sigil cluster this agent serves (written on the Secret). */
  clusterId: string;
  /**
   * Whether a Secret this agent wrote for `owner` may pass to `source`: only when nothing in the
   * current (complete) desired state still wants `owner`, i.e. it is an orphan of an earlier state.
   */
  ownerRetired(owner: string): boolean;
}

export type WriteOutcome =
  | { state: 'applied'; changed: boolean; resourceVersion: string | undefined }
  /** `unmanaged`: no managed-by label; `other-owner`: managed by Sigil for another (project, app, secret). */
  | { state: 'conflict'; holder: 'unmanaged' | 'other-owner' }
  | { state: 'failed'; reason: SecretFailureReason; message: string };

export const checksumOf = (envelope: Buffer) => createHash('sha256').update(envelope).digest('hex');

const isManaged = (s: Secret | undefined) => s?.metadata?.labels?.[MANAGED_BY] === MANAGED_BY_SIGIL;
/** The (project, app, secret) a managed Secret belongs to: its one owner. */
const ownerOf = (s: Secret) => s.metadata?.annotations?.[ANNOTATION_SOURCE];
const statusOf = (err: unknown) => (err instanceof KubeError ? err.code : undefined);
const secretPath = (ns: string, name?: string) =>
  `/api/v1/namespaces/${encodeURIComponent(ns)}/secrets${name === undefined ? '' : `/${encodeURIComponent(name)}`}`;

/**
 * The agent's only door to Kubernetes Secrets. Writes carry the managed-by label and source
 * annotations; updates are conditional on the resourceVersion read (optimistic concurrency); a
 * Secret that Sigil does not manage, or that another (project, app, secret) owns, is never
 * touched; nothing is written outside the namespaces the agent serves, whatever RBAC allows.
 */
export class KubeSecrets {
  constructor(
    private readonly kube: KubeClient,
    /** Namespaces served; undefined: all. */
    private readonly namespaces: string[] | undefined,
  ) {}

  serves(namespace: string): boolean {
    return this.namespaces === undefined || this.namespaces.includes(namespace);
  }

  /**
   * Creates or updates the Secret. It is left alone when it already holds exactly these values:
   * known without decrypting when its resourceVersion is `knownVersion` (one this agent wrote
   * or verified) and the checksum matches; otherwise by comparing its data with the decrypted
   * values, because the checksum annotation only says what was written, not what is there now.
   */
  async write(s: SecretToWrite, knownVersion?: string): Promise<WriteOutcome> {
    if (!this.serves(s.namespace)) return notServed(s.namespace);
    const checksum = checksumOf(s.envelope);
    for (let attempt = 0; attempt < 3; attempt++) {
      let existing: Secret | undefined;
      try {
        existing = await this.kube.request<Secret>('GET', secretPath(s.namespace, s.name));
      } catch (err) {
        if (statusOf(err) !== 404) return failed(err);
      }
      if (existing && !isManaged(existing)) return { state: 'conflict', holder: 'unmanaged' };
      if (existing && ownerOf(existing) !== s.source && !handsOver(existing, s)) return { state: 'conflict', holder: 'other-owner' };
      const sameEnvelope = existing?.metadata?.annotations?.[ANNOTATION_CHECKSUM] === checksum && existing.type === s.type;
      if (sameEnvelope && knownVersion !== undefined && existing?.metadata?.resourceVersion === knownVersion) {
        return { state: 'applied', changed: false, resourceVersion: knownVersion };
      }
      const values = s.open();
      try {
        if (existing && sameEnvelope && holdsExactly(existing.data, values)) {
          return { state: 'applied', changed: false, resourceVersion: existing.metadata?.resourceVersion };
        }
        const body: Secret = {
          apiVersion: 'v1',
          kind: 'Secret',
          type: s.type,
          metadata: {
            name: s.name,
            namespace: s.namespace,
            labels: { [MANAGED_BY]: MANAGED_BY_SIGIL, [LABEL_APP]: s.app },
            annotations: {
              [ANNOTATION_SOURCE]: s.source,
              [ANNOTATION_CLUSTER]: s.clusterId,
              [ANNOTATION_SECRET_ID]: s.secretId,
              [ANNOTATION_VERSION]: String(s.version),
              [ANNOTATION_GENERATION]: s.generation.toString(),
              [ANNOTATION_CHECKSUM]: checksum,
            },
            ...(existing ? { resourceVersion: existing.metadata?.resourceVersion } : {}),
          },
          data: Object.fromEntries([...values].map(([k, v]) => [k, v.toString('base64')])),
        };
        // The type of an existing Secret is immutable: a changed type means delete and create.
        if (existing && existing.type !== s.type) {
          await this.kube.request('DELETE', secretPath(s.namespace, s.name), {
            preconditions: { resourceVersion: existing.metadata?.resourceVersion },
          });
          existing = undefined;
          delete body.metadata!.resourceVersion;
        }
        const written = existing
          ? await this.kube.request<Secret>('PUT', secretPath(s.namespace, s.name), body)
          : await this.kube.request<Secret>('POST', secretPath(s.namespace), body);
        return { state: 'applied', changed: true, resourceVersion: written.metadata?.resourceVersion };
      } catch (err) {
        // 409: someone changed it between our read and write (or created it): read again.
        if (statusOf(err) === 409) continue;
        if (statusOf(err) === 404)
          return { state: 'failed', reason: SecretFailureReason.NamespaceNotFound, message: `namespace ${s.namespace} does not exist` };
        return failed(err);
      } finally {
        for (const v of values.values()) v.fill(0);
      }
    }
    return { state: 'failed', reason: SecretFailureReason.WriteConflict, message: 'the Secret kept changing while being written' };
  }

  /** The owner (`sigil.dev/source`) of a managed Secret; undefined when absent or not managed. */
  async owner(namespace: string, name: string): Promise<string | undefined> {
    try {
      const existing = await this.kube.request<Secret>('GET', secretPath(namespace, name));
      return isManaged(existing) ? ownerOf(existing) : undefined;
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw err;
    }
  }

  /**
   * Deletes a Secret this agent wrote: managed, and recording `clusterId`, at the version read.
   * One another installation or another cluster's agent wrote (a foreign `sigil.dev/cluster`, or
   * none) is left alone: the managed-by label alone is anyone's to set.
   */
  async delete(namespace: string, name: string, clusterId: string): Promise<'deleted' | 'absent' | 'conflict'> {
    if (!this.serves(namespace)) return 'conflict';
    let existing: Secret;
    try {
      existing = await this.kube.request<Secret>('GET', secretPath(namespace, name));
    } catch (err) {
      if (statusOf(err) === 404) return 'absent';
      throw err;
    }
    if (!isManaged(existing) || existing.metadata?.annotations?.[ANNOTATION_CLUSTER] !== clusterId) return 'conflict';
    try {
      await this.kube.request('DELETE', secretPath(namespace, name), {
        preconditions: { resourceVersion: existing.metadata?.resourceVersion },
      });
      return 'deleted';
    } catch (err) {
      if (statusOf(err) === 404) return 'absent';
      throw err;
    }
  }

  /** Every Secret this agent manages, in the namespaces it serves (or all, cluster-wide). */
  async listManaged(namespaces: string[] | undefined): Promise<Array<{ namespace: string; name: string }>> {
    const query = `?labelSelector=${encodeURIComponent(`${MANAGED_BY}=${MANAGED_BY_SIGIL}`)}`;
    const lists = namespaces
      ? await Promise.all(namespaces.map((ns) => this.kube.request<List<Secret>>('GET', `${secretPath(ns)}${query}`)))
      : [await this.kube.request<List<Secret>>('GET', `/api/v1/secrets${query}`)];
    return lists.flatMap((l) => l.items).map((s) => ({ namespace: s.metadata!.namespace!, name: s.metadata!.name! }));
  }
}

/**
 * Whether `data` (base64, as Kubernetes returns it) holds exactly `values`: the same keys and the
 * same bytes. The decoded copies are zeroed; the caller zeroes `values`.
 */
export function holdsExactly(data: Record<string, string> | undefined, values: Map<string, Buffer>): boolean {
  const keys = Object.keys(data ?? {});
  if (keys.length !== values.size) return false;
  for (const [k, v] of values) {
    if (!data || !Object.hasOwn(data, k)) return false;
    const actual = Buffer.from(data[k]!, 'base64');
    try {
      if (actual.length !== v.length || !timingSafeEqual(actual, v)) return false;
    } finally {
      actual.fill(0);
    }
  }
  return true;
}

const notServed = (namespace: string): WriteOutcome => ({
  state: 'failed',
  reason: SecretFailureReason.NamespaceNotServed,
  message: `this agent does not serve namespace ${namespace}`,
});

/**
 * The control plane gives each (namespace, name) one owner at a time; when it moves (a secret
 * deleted from one app and created in another), the agent may not see the step in between. A
 * Secret it wrote itself, for an owner its desired state no longer names, is such an orphan and
 * passes to the new owner. One written by anyone else (another agent, another installation, an
 * older agent version that did not record the cluster) stays a conflict.
 */
function handsOver(existing: Secret, s: SecretToWrite): boolean {
  const owner = ownerOf(existing);
  return owner !== undefined && existing.metadata?.annotations?.[ANNOTATION_CLUSTER] === s.clusterId && s.ownerRetired(owner);
}

function failed(err: unknown): WriteOutcome {
  const code = statusOf(err);
  if (code === 403)
    return { state: 'failed', reason: SecretFailureReason.Forbidden, message: 'the agent may not write Secrets in this namespace' };
  return { state: 'failed', reason: SecretFailureReason.KubernetesError, message: `Kubernetes API error${code ? ` ${code}` : ''}` };
}
