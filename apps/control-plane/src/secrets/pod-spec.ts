import { createHash } from 'node:crypto';
import type { AppEntity } from '../apps/app.entity.js';

/**
 * The volume of each Secret: a DNS-1123 label of at most 63 characters, as Kubernetes requires,
 * for Secret names of up to 253 with dots. `sigil-<name>`, dots as dashes, where that fits and no
 * other Secret of the pod gets the same; otherwise shortened and ended with 8 hex digits of the
 * name's SHA-256, so two Secrets never share a volume (`a.b` and `a-b`, or two long names alike
 * in their first 57 characters). Volume names are local to the pod spec, so they need not stay
 * the same as the set of Secrets changes.
 */
function volumeNames(secrets: string[]): Map<string, string> {
  const readable = (s: string) => `sigil-${s.replace(/\./g, '-')}`;
  const uses = new Map<string, number>();
  for (const s of secrets) uses.set(readable(s), (uses.get(readable(s)) ?? 0) + 1);
  return new Map(
    secrets.map((s) => {
      const name = readable(s);
      if (name.length <= 63 && uses.get(name) === 1) return [s, name];
      const hash = createHash('sha256').update(s).digest('hex').slice(0, 8);
      return [s, `${name.slice(0, 63 - 9).replace(/-+$/, '')}-${hash}`];
    }),
  );
}

/** The annotation a pod opts in to injection with: its value names the app. */
export const INJECT_ANNOTATION = 'sigil.dev/inject';

/** What an inject app's pods need: no pod-spec change, one annotation on the pod template. */
export function injectAnnotations(app: Pick<AppEntity, 'name'>): Record<string, string> {
  return { [INJECT_ANNOTATION]: app.name };
}

export const INJECT_NOTE =
  'delivery mode inject: no Kubernetes Secret exists to mount; add the annotations to the pod template (metadata.annotations) ' +
  "and the agent's admission webhook adds the init container or sidecar. Only pods of the app's consumers receive the values.";

/**
 * The pod-spec fragment that consumes an app's Secrets: `envFrom` for env delivery, or one
 * read-only Secret volume per secret (kubelet keeps Secret volumes in tmpfs, i.e. in memory).
 * Inject apps have none (see injectAnnotations).
 */
export function renderPodSpec(app: AppEntity, secretNames: string[], containerName = 'app'): Record<string, unknown> {
  if (app.deliveryMode === 'inject') return {};
  if (app.deliveryMode === 'env') {
    return { containers: [{ name: containerName, envFrom: secretNames.map((name) => ({ secretRef: { name } })) }] };
  }
  const volume = volumeNames(secretNames);
  return {
    volumes: secretNames.map((s) => ({ name: volume.get(s)!, secret: { secretName: s, defaultMode: 0o400 } })),
    containers: [
      {
        name: containerName,
        volumeMounts: secretNames.map((s) => ({
          name: volume.get(s)!,
          mountPath: `${app.mountPath.replace(/\/$/, '')}/${s}`,
          readOnly: true,
        })),
      },
    ],
  };
}
