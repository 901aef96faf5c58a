import type { AppEntity } from '../apps/app.entity.js';

/**
 * The pod-spec fragment that consumes an app's Secrets: `envFrom` for env delivery, or one
 * read-only Secret volume per secret (kubelet keeps Secret volumes in tmpfs, i.e. in memory).
 */
export function renderPodSpec(app: AppEntity, secretNames: string[], containerName = 'app'): Record<string, unknown> {
  if (app.deliveryMode === 'env') {
    return { containers: [{ name: containerName, envFrom: secretNames.map((name) => ({ secretRef: { name } })) }] };
  }
  const volumeName = (s: string) => `sigil-${s.replace(/\./g, '-')}`.slice(0, 63).replace(/-+$/, '');
  return {
    volumes: secretNames.map((s) => ({ name: volumeName(s), secret: { secretName: s, defaultMode: 0o400 } })),
    containers: [
      {
        name: containerName,
        volumeMounts: secretNames.map((s) => ({
          name: volumeName(s),
          mountPath: `${app.mountPath.replace(/\/$/, '')}/${s}`,
          readOnly: true,
        })),
      },
    ],
  };
}
