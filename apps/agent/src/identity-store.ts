import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { KubeError, type KubeClient } from './kube/kube-client.js';
import type { Secret } from './kube/types.js';

/** What enrollment gave this agent. The private keys were made here and never left. */
export interface AgentIdentity {
  cluster: string;
  clusterId: string;
  tlsKeyPem: string;
  certificatePem: string;
  deliveryPrivateKeyPem: string;
}

export interface IdentityStore {
  readonly where: string;
  load(): Promise<AgentIdentity | undefined>;
  save(identity: AgentIdentity): Promise<void>;
}

const FIELDS = ['cluster', 'clusterId', 'tlsKeyPem', 'certificatePem', 'deliveryPrivateKeyPem'] as const;

function parse(get: (k: string) => string | undefined): AgentIdentity | undefined {
  const values = FIELDS.map((f) => get(f));
  if (values.some((v) => !v)) return undefined;
  return Object.fromEntries(FIELDS.map((f, i) => [f, values[i]!])) as unknown as AgentIdentity;
}

/** A directory of 0600 files (for a pod with a persistent volume, or outside Kubernetes). */
export class FileIdentityStore implements IdentityStore {
  constructor(private readonly dir: string) {}

  get where(): string {
    return this.dir;
  }

  async load(): Promise<AgentIdentity | undefined> {
    const read = async (f: string) => readFile(path.join(this.dir, f), 'utf8').catch(() => undefined);
    const entries = await Promise.all(FIELDS.map(async (f) => [f, await read(f)] as const));
    return parse((k) => entries.find(([f]) => f === k)?.[1]);
  }

  async save(identity: AgentIdentity): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const f of FIELDS) {
      const tmp = path.join(this.dir, `.${f}.tmp`);
      await writeFile(tmp, identity[f], { mode: 0o600 });
      await rename(tmp, path.join(this.dir, f));
    }
  }
}

/**
 * A Secret in the agent's own namespace, so a rescheduled pod keeps its identity without a
 * volume. It is labelled managed-by sigil-agent, never sigil: the agent never deletes it as
 * an unwanted delivered Secret.
 */
export class SecretIdentityStore implements IdentityStore {
  constructor(
    private readonly kube: KubeClient,
    private readonly namespace: string,
    private readonly name: string,
  ) {}

  private get path(): string {
    return `/api/v1/namespaces/${this.namespace}/secrets/${this.name}`;
  }

  get where(): string {
    return `secret ${this.namespace}/${this.name}`;
  }

  async load(): Promise<AgentIdentity | undefined> {
    try {
      const s = await this.kube.request<Secret>('GET', this.path);
      return parse((k) => (s.data?.[k] ? Buffer.from(s.data[k], 'base64').toString('utf8') : undefined));
    } catch (err) {
      if (err instanceof KubeError && err.code === 404) return undefined;
      throw err;
    }
  }

  async save(identity: AgentIdentity): Promise<void> {
    const body: Secret = {
      metadata: { name: this.name, namespace: this.namespace, labels: { 'app.kubernetes.io/managed-by': 'sigil-agent' } },
      type: 'Opaque',
      data: Object.fromEntries(FIELDS.map((f) => [f, Buffer.from(identity[f]).toString('base64')])),
    };
    try {
      await this.kube.request('PUT', this.path, body);
    } catch (err) {
      if (!(err instanceof KubeError && err.code === 404)) throw err;
      await this.kube.request('POST', `/api/v1/namespaces/${this.namespace}/secrets`, body);
    }
  }
}

/**
 * Nowhere but this process: nothing of the agent's in etcd or on disk. Every start enrolls again
 * (a service-account token can, a one-time bootstrap token cannot), with fresh keys.
 */
export class MemoryIdentityStore implements IdentityStore {
  private identity: AgentIdentity | undefined;
  readonly where = 'memory';

  load(): Promise<AgentIdentity | undefined> {
    return Promise.resolve(this.identity);
  }

  save(identity: AgentIdentity): Promise<void> {
    this.identity = identity;
    return Promise.resolve();
  }
}
