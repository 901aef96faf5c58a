import { createHash } from 'node:crypto';
import type { AppEntity } from '../apps/app.entity.js';

/**
 * The volume of one Secret: a DNS-1123 label of at most 63 characters, as Kubernetes requires,
 * for a Secret name of up to 253 with dots. `sigil-<name>` where that is one; otherwise the name
 * shortened, dots as dashes, and 8 hex digits of its SHA-256, so two Secrets never share a volume
 * (`a.b` and `a-b`, or two long names alike in their first 57 characters).
 */
function volumeName(secret: string): string {
  const plain = `sigil-${secret}`;
  if (!secret.includes('.') && plain.length <= 63) return plain;
  const hash = createHash('sha256').update(secret).digest('hex').slice(0, 8);
  return `${plain
    .replace(/\./g, '-')
    .slice(0, 63 - 9)
    .replace(/-+$/, '')}-${hash}`;
}

/**
 * The pod-spec fragment that consumes an app's Secrets: `envFrom` for env delivery, or one
 * read-only Secret volume per secret (kubelet keeps Secret volumes in tmpfs, i.e. in memory).
 */
export function renderPodSpec(app: AppEntity, secretNames: string[], containerName = 'app'): Record<string, unknown> {
  if (app.deliveryMode === 'env') {
    return { containers: [{ name: containerName, envFrom: secretNames.map((name) => ({ secretRef: { name } })) }] };
  }
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
