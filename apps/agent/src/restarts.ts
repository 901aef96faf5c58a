import { KubeError, type KubeClient } from './kube/kube-client.js';
import type { List, PodSpec, Workload } from './kube/types.js';
import type { Logger } from '@sigil/logging';
import { ANNOTATION_INJECT, ANNOTATION_INJECT_MODE, ANNOTATION_RESTART, ANNOTATION_RESTARTED_AT } from './labels.js';

/** Whether a pod template reads the Secret `name` (envFrom, env, volumes, projected volumes). */
export function usesSecret(spec: PodSpec | undefined, name: string): boolean {
  if (!spec) return false;
  const containers = [...(spec.containers ?? []), ...(spec.initContainers ?? [])];
  return (
    containers.some(
      (c) => c.envFrom?.some((e) => e.secretRef?.name === name) || c.env?.some((e) => e.valueFrom?.secretKeyRef?.name === name),
    ) || (spec.volumes ?? []).some((v) => v.secret?.secretName === name || v.projected?.sources?.some((p) => p.secret?.name === name))
  );
}

/**
 * Opt-in rolling restarts: workloads annotated `sigil.dev/restart-on-change: "true"` that use a
 * Secret which changed get a new pod-template annotation (what `kubectl rollout restart` does).
 * At most one restart per workload per `minIntervalMs`, so a burst of rotations restarts once.
 */
export class WorkloadRestarter {
  private readonly last = new Map<string, number>();

  constructor(
    private readonly kube: KubeClient,
    private readonly logger: Logger,
    private readonly minIntervalMs: number,
  ) {}

  /** Restarts the opted-in workloads of `namespace` that use one of the Secrets `names`. */
  secretsChanged(namespace: string, names: string[]): Promise<number> {
    if (names.length === 0) return Promise.resolve(0);
    return this.restartWhere(namespace, (w) => names.some((n) => usesSecret(w.spec?.template?.spec, n)), 'its Secret changed');
  }

  /**
   * Restarts the opted-in workloads of `namespace` whose pods get `app` injected at start only
   * (init mode): their values are fixed for the pod's life. Sidecar pods get rotations live.
   */
  injectedAppChanged(namespace: string, app: string): Promise<number> {
    return this.restartWhere(
      namespace,
      (w) => {
        const a = w.spec?.template?.metadata?.annotations;
        return a?.[ANNOTATION_INJECT] === app && (a[ANNOTATION_INJECT_MODE] ?? 'init') === 'init';
      },
      'its injected values changed',
    );
  }

  private async restartWhere(namespace: string, affected: (w: Workload) => boolean, why: string): Promise<number> {
    let restarted = 0;
    const kinds = [
      ['Deployment', 'deployments'],
      ['StatefulSet', 'statefulsets'],
      ['DaemonSet', 'daemonsets'],
    ].map(([kind, resource]) => ({
      kind: kind!,
      list: () => this.kube.request<List<Workload>>('GET', `/apis/apps/v1/namespaces/${namespace}/${resource}`),
      patch: (name: string, body: object) =>
        this.kube.request('PATCH', `/apis/apps/v1/namespaces/${namespace}/${resource}/${name}`, body, 'application/merge-patch+json'),
    }));
    for (const k of kinds) {
      let items: Workload[];
      try {
        items = (await k.list()).items;
      } catch (err) {
        this.logger.warn(
          { namespace, kind: k.kind, code: err instanceof KubeError ? err.code : undefined },
          'cannot list workloads to restart',
        );
        continue;
      }
      for (const w of items) {
        const name = w.metadata?.name ?? '';
        if (w.metadata?.annotations?.[ANNOTATION_RESTART] !== 'true') continue;
        if (!affected(w)) continue;
        const key = `${k.kind}/${namespace}/${name}`;
        if (Date.now() - (this.last.get(key) ?? 0) < this.minIntervalMs) continue;
        this.last.set(key, Date.now());
        await k
          .patch(name, { spec: { template: { metadata: { annotations: { [ANNOTATION_RESTARTED_AT]: new Date().toISOString() } } } } })
          .then(() => {
            restarted += 1;
            this.logger.info({ workload: key, why }, 'restarted a workload');
          })
          .catch((err: unknown) =>
            this.logger.warn({ workload: key, code: (err as { code?: number }).code }, 'could not restart a workload'),
          );
      }
    }
    return restarted;
  }
}
