import { describe, expect, it } from '@jest/globals';
import { dns1123LabelProblem } from '@sigil/kubernetes';
import type { AppEntity } from '../apps/app.entity.js';
import { INJECT_ANNOTATION, injectAnnotations, renderPodSpec } from './pod-spec.js';

const app = (deliveryMode: AppEntity['deliveryMode'], mountPath = '/etc/sigil') =>
  ({ deliveryMode, mountPath, name: 'checkout' }) as AppEntity;

interface VolumeSpec {
  volumes: Array<{ name: string; secret: { secretName: string; defaultMode: number } }>;
  containers: Array<{ name: string; volumeMounts: Array<{ name: string; mountPath: string; readOnly: boolean }> }>;
}

describe('renderPodSpec', () => {
  it('inject delivery: nothing in the pod spec (no Secret exists), the app named in one pod annotation', () => {
    expect(renderPodSpec(app('inject'), ['db', 'api'], 'web')).toEqual({});
    expect(injectAnnotations(app('inject'))).toEqual({ [INJECT_ANNOTATION]: 'checkout' });
    expect(INJECT_ANNOTATION).toBe('sigil.dev/inject');
  });

  it('env delivery: one envFrom secretRef per Secret, in the named container', () => {
    expect(renderPodSpec(app('env'), ['db', 'api'], 'web')).toEqual({
      containers: [{ name: 'web', envFrom: [{ secretRef: { name: 'db' } }, { secretRef: { name: 'api' } }] }],
    });
    expect(renderPodSpec(app('env'), [])).toEqual({ containers: [{ name: 'app', envFrom: [] }] });
  });

  it('volume delivery: one read-only Secret volume per Secret (mode 0400), mounted under mountPath/<secret>', () => {
    expect(renderPodSpec(app('volume', '/etc/sigil/'), ['db'])).toEqual({
      volumes: [{ name: 'sigil-db', secret: { secretName: 'db', defaultMode: 0o400 } }],
      containers: [{ name: 'app', volumeMounts: [{ name: 'sigil-db', mountPath: '/etc/sigil/db', readOnly: true }] }],
    });
  });

  it('names every volume with a distinct DNS-1123 label, whatever the Secret names (dots, 253 characters)', () => {
    const long = 'a'.repeat(240);
    const names = ['tls.example.com', 'tls-example-com', `${long}.one`, `${long}.two`, `x${'-'.repeat(60)}y`, 'db'];
    const spec = renderPodSpec(app('volume'), names) as unknown as VolumeSpec;
    const volumes = spec.volumes.map((v) => v.name);
    for (const v of volumes) expect([v, dns1123LabelProblem(v)]).toEqual([v, undefined]);
    expect(new Set(volumes).size).toBe(names.length);
    // Each mount refers to its own Secret's volume.
    const bySecret = new Map(spec.volumes.map((v) => [v.secret.secretName, v.name]));
    expect(spec.containers[0]!.volumeMounts.map((m) => [m.mountPath, m.name])).toEqual(
      names.map((n) => [`/etc/sigil/${n}`, bySecret.get(n)]),
    );
    // Names that fit and meet no other keep their readable volume name.
    expect(bySecret.get('db')).toBe('sigil-db');
    expect(renderPodSpec(app('volume'), ['tls.bundle'])).toMatchObject({ volumes: [{ name: 'sigil-tls-bundle' }] });
  });
});
