import { describe, expect, it } from '@jest/globals';
import { mutatePod, type InjectablePod, type JsonPatchOp, type MutationSettings } from './mutate.js';

const settings: MutationSettings = {
  image: 'sigil-agent:1',
  agentUrl: 'https://agent.sigil.svc:443',
  caPem: 'PEM',
  audience: 'sigil-inject',
};

const pod = (annotations?: Record<string, string>, extra: Partial<NonNullable<InjectablePod['spec']>> = {}): InjectablePod => ({
  metadata: { generateName: 'web-', ...(annotations ? { annotations } : {}) },
  spec: { securityContext: { runAsUser: 1000 }, containers: [{ name: 'app', command: ['/srv/app'] }], ...extra },
});

/** The pod after applying the patch (its ops are whole-member adds). */
function applied(p: InjectablePod, ops: JsonPatchOp[]): InjectablePod {
  const out = structuredClone(p) as Record<string, Record<string, unknown>>;
  for (const op of ops) {
    const [, a, b] = op.path.split('/');
    out[a!] ??= {};
    out[a!]![b!] = op.value;
  }
  return out;
}

describe('mutatePod', () => {
  it('leaves a pod without the annotation alone', () => {
    expect(mutatePod(pod(), settings)).toEqual({ kind: 'skip' });
  });

  it('adds the injector, the memory volumes, the bound-token volume and the read-only mount', () => {
    const m = mutatePod(pod({ 'sigil.dev/inject': 'pay' }), settings);
    if (m.kind !== 'patch') throw new Error(m.kind);
    const p = applied(pod({ 'sigil.dev/inject': 'pay' }), m.ops);
    expect(p.metadata!.annotations).toEqual({ 'sigil.dev/inject': 'pay', 'sigil.dev/injected': 'pay' });
    const [init] = p.spec!.initContainers!;
    expect(init).toMatchObject({
      name: 'sigil-inject-init',
      image: 'sigil-agent:1',
      securityContext: { runAsUser: 1000, runAsNonRoot: true, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
    });
    expect(init!.command!.at(-1)).toBe('init');
    expect(p.spec!.volumes).toEqual([
      { name: 'sigil-inject-files', emptyDir: { medium: 'Memory', sizeLimit: '16Mi' } },
      {
        name: 'sigil-inject-token',
        projected: { sources: [{ serviceAccountToken: { audience: 'sigil-inject', expirationSeconds: 600, path: 'token' } }] },
      },
    ]);
    expect(p.spec!.containers![0]).toEqual({
      name: 'app',
      command: ['/srv/app'],
      volumeMounts: [{ name: 'sigil-inject-files', mountPath: '/sigil/secrets', readOnly: true }],
    });
  });

  it('is idempotent: an injected pod is skipped', () => {
    const m = mutatePod(pod({ 'sigil.dev/inject': 'pay' }), settings);
    if (m.kind !== 'patch') throw new Error(m.kind);
    expect(mutatePod(applied(pod({ 'sigil.dev/inject': 'pay' }), m.ops), settings)).toEqual({ kind: 'skip' });
  });

  it('sidecar mode adds a restartable init container after the first; env mode wraps the command with sigil-exec', () => {
    const a = { 'sigil.dev/inject': 'pay', 'sigil.dev/inject-mode': 'sidecar', 'sigil.dev/inject-env': 'true' };
    const m = mutatePod(pod(a), settings);
    if (m.kind !== 'patch') throw new Error(m.kind);
    const p = applied(pod(a), m.ops);
    expect(p.spec!.initContainers!.map((c) => [c.name, c.restartPolicy])).toEqual([
      ['sigil-inject-init', undefined],
      ['sigil-inject-sidecar', 'Always'],
    ]);
    const app = p.spec!.containers![0]!;
    expect(app.command).toEqual(['/sigil/bin/sigil-exec', '/srv/app']);
    expect(app.env).toEqual([{ name: 'SIGIL_EXEC_ENV_FILE', value: '/sigil/env/env' }]);
    expect(app.volumeMounts!.map((v) => v.mountPath)).toEqual(['/sigil/secrets', '/sigil/env', '/sigil/bin']);
  });

  it("a sidecar that signals the app shares the pod's PID namespace and gets the signal", () => {
    const a = { 'sigil.dev/inject': 'pay', 'sigil.dev/inject-mode': 'sidecar', 'sigil.dev/inject-signal': 'hup' };
    const m = mutatePod(pod(a), settings);
    if (m.kind !== 'patch') throw new Error(m.kind);
    const p = applied(pod(a), m.ops);
    expect(p.spec!.shareProcessNamespace).toBe(true);
    expect(p.spec!.initContainers![1]!.env).toContainEqual({ name: 'SIGIL_INJECT_SIGNAL', value: 'SIGHUP' });
    expect(p.spec!.initContainers![0]!.env!.some((e) => e.name === 'SIGIL_INJECT_SIGNAL')).toBe(false);
  });

  it('only the named containers get the values', () => {
    const two = pod(
      { 'sigil.dev/inject': 'pay', 'sigil.dev/inject-containers': 'app' },
      {
        containers: [
          { name: 'app', command: ['/a'] },
          { name: 'proxy', command: ['/p'] },
        ],
      },
    );
    const m = mutatePod(two, settings);
    if (m.kind !== 'patch') throw new Error(m.kind);
    expect(applied(two, m.ops).spec!.containers![1]).toEqual({ name: 'proxy', command: ['/p'] });
  });

  it.each([
    [{ 'sigil.dev/inject': 'Not_An_App' }, {}, 'must name an app'],
    [{ 'sigil.dev/inject': 'pay', 'sigil.dev/inject-mode': 'always' }, {}, 'init or sidecar'],
    [{ 'sigil.dev/inject': 'pay', 'sigil.dev/inject-path': '/etc/../root' }, {}, 'inject-path'],
    [{ 'sigil.dev/inject': 'pay', 'sigil.dev/inject-env': 'yes' }, {}, '"true" or "false"'],
    [{ 'sigil.dev/inject': 'pay', 'sigil.dev/inject-containers': 'nope' }, {}, 'no container "nope"'],
    [{ 'sigil.dev/inject': 'pay', 'sigil.dev/inject-env': 'true' }, { containers: [{ name: 'app' }] }, 'has no command'],
    [{ 'sigil.dev/inject': 'pay' }, { securityContext: {} }, 'set runAsUser'],
    [{ 'sigil.dev/inject': 'pay', 'sigil.dev/inject-signal': 'HUP' }, {}, 'needs sigil.dev/inject-mode: sidecar'],
    [{ 'sigil.dev/inject': 'pay', 'sigil.dev/inject-mode': 'sidecar', 'sigil.dev/inject-signal': 'KILL' }, {}, 'must be one of'],
    [{ 'sigil.dev/inject': 'pay' }, { containers: [{ name: 'app', volumeMounts: [{ name: 'x', mountPath: '/sigil' }] }] }, 'overlaps'],
    [{ 'sigil.dev/inject': 'pay' }, { volumes: [{ name: 'sigil-inject-files' }] }, 'already has a volume'],
  ])('denies %j with a reason', (annotations, spec, reason) => {
    const m = mutatePod(pod(annotations, spec), settings);
    expect(m.kind).toBe('deny');
    expect(m.kind === 'deny' && m.message).toContain(reason);
  });
});
