import { dns1123LabelProblem } from '@sigil/kubernetes';
import {
  ANNOTATION_INJECT,
  ANNOTATION_INJECT_CONTAINERS,
  ANNOTATION_INJECT_ENV,
  ANNOTATION_INJECT_MODE,
  ANNOTATION_INJECT_PATH,
  ANNOTATION_INJECT_SIGNAL,
  ANNOTATION_INJECTED,
} from '../labels.js';

/** The parts of a Pod the webhook reads and changes (anything else passes through untouched). */
export interface InjectablePod {
  metadata?: { name?: string; generateName?: string; annotations?: Record<string, string> };
  spec?: {
    containers?: Container[];
    initContainers?: Container[];
    volumes?: Array<{ name: string } & Record<string, unknown>>;
    securityContext?: { runAsUser?: number; runAsGroup?: number };
  } & Record<string, unknown>;
}

interface Container {
  name: string;
  command?: string[];
  env?: Array<{ name: string } & Record<string, unknown>>;
  volumeMounts?: Array<{ name: string; mountPath: string } & Record<string, unknown>>;
  securityContext?: { runAsUser?: number; runAsGroup?: number } & Record<string, unknown>;
  [k: string]: unknown;
}

export interface MutationSettings {
  /** Image of the init container and sidecar (the agent's own by default). */
  image: string;
  /** Where the injector reaches the agent: https://<service>.<namespace>.svc:<port>. */
  agentUrl: string;
  /** PEM of the CA that signed the agent's serving certificate (public; the injector pins it). */
  caPem: string;
  audience: string;
  /** Kubernetes resources of the init container and sidecar. */
  resources?: Record<string, unknown>;
}

export type Mutation = { kind: 'skip' } | { kind: 'patch'; ops: JsonPatchOp[]; app: string } | { kind: 'deny'; message: string };

export interface JsonPatchOp {
  op: 'add';
  path: string;
  value: unknown;
}

export const INIT_CONTAINER = 'sigil-inject-init';
export const SIDECAR_CONTAINER = 'sigil-inject-sidecar';
const VOLUME_FILES = 'sigil-inject-files';
const VOLUME_ENV = 'sigil-inject-env';
const VOLUME_BIN = 'sigil-inject-bin';
const VOLUME_TOKEN = 'sigil-inject-token';
const TOKEN_DIR = '/var/run/secrets/sigil.dev';
const ENV_DIR = '/sigil/env';
const BIN_DIR = '/sigil/bin';
export const DEFAULT_FILES_PATH = '/sigil/secrets';
/** The shortest expiry the API server allows for a projected token; the kubelet refreshes it at 80%. */
const TOKEN_EXPIRATION_SECONDS = 600;
const INJECTOR_ENTRY = ['/nodejs/bin/node', '--max-semi-space-size=1', '--lite-mode', '/app/dist/apps/agent/sigil-inject.cjs'];
const SAFE_PATH = /^\/[A-Za-z0-9._\-/]{1,255}$/;
/** Signals an app may ask for on rotation (never KILL or STOP). */
const SIGNALS = new Set(['HUP', 'USR1', 'USR2', 'INT', 'TERM', 'WINCH']);

/**
 * The webhook's decision for one Pod CREATE: untouched unless annotated `sigil.dev/inject`;
 * already injected pods are left as they are (idempotent); otherwise volumes, the injector
 * init container (and sidecar) and the app containers' mounts (and sigil-exec wrapper) are
 * added. Nothing added holds a value: the values are fetched by the injector at start.
 */
export function mutatePod(pod: InjectablePod, settings: MutationSettings): Mutation {
  const annotations = pod.metadata?.annotations ?? {};
  const app = annotations[ANNOTATION_INJECT];
  if (app === undefined) return { kind: 'skip' };
  const spec = pod.spec ?? {};
  if (annotations[ANNOTATION_INJECTED] !== undefined || (spec.initContainers ?? []).some((c) => c.name === INIT_CONTAINER))
    return { kind: 'skip' };

  const problem = dns1123LabelProblem(app);
  if (problem) return deny(`${ANNOTATION_INJECT} must name an app (${problem})`);
  const mode = annotations[ANNOTATION_INJECT_MODE] ?? 'init';
  if (mode !== 'init' && mode !== 'sidecar') return deny(`${ANNOTATION_INJECT_MODE} must be init or sidecar, not "${mode}"`);
  const filesPath = annotations[ANNOTATION_INJECT_PATH] ?? DEFAULT_FILES_PATH;
  if (
    !SAFE_PATH.test(filesPath) ||
    filesPath.split('/').includes('..') ||
    filesPath.startsWith('/sigil/env') ||
    filesPath.startsWith(BIN_DIR)
  )
    return deny(`${ANNOTATION_INJECT_PATH} must be an absolute path of letters, digits and ._-/ outside /sigil/env and /sigil/bin`);
  const envWanted = annotations[ANNOTATION_INJECT_ENV] ?? 'false';
  if (envWanted !== 'true' && envWanted !== 'false') return deny(`${ANNOTATION_INJECT_ENV} must be "true" or "false"`);
  const withEnv = envWanted === 'true';
  const signal = annotations[ANNOTATION_INJECT_SIGNAL]?.toUpperCase().replace(/^SIG/, '');
  if (signal !== undefined && !SIGNALS.has(signal)) return deny(`${ANNOTATION_INJECT_SIGNAL} must be one of ${[...SIGNALS].join(', ')}`);
  if (signal !== undefined && mode !== 'sidecar')
    return deny(`${ANNOTATION_INJECT_SIGNAL} needs ${ANNOTATION_INJECT_MODE}: sidecar (only the sidecar sees rotations)`);

  const containers = spec.containers ?? [];
  const named = annotations[ANNOTATION_INJECT_CONTAINERS]?.split(',')
    .map((n) => n.trim())
    .filter(Boolean);
  for (const n of named ?? [])
    if (!containers.some((c) => c.name === n)) return deny(`${ANNOTATION_INJECT_CONTAINERS} names no container "${n}"`);
  const targets = new Set(named ?? containers.map((c) => c.name));

  const taken = new Set((spec.volumes ?? []).map((v) => v.name));
  for (const v of [VOLUME_FILES, VOLUME_ENV, VOLUME_BIN, VOLUME_TOKEN])
    if (taken.has(v)) return deny(`the pod already has a volume named ${v}`);

  // Files are mode 0400: the injector must run as the user the app containers run as.
  const uids = new Set<number | undefined>();
  let gid: number | undefined;
  for (const c of containers.filter((c) => targets.has(c.name))) {
    uids.add(c.securityContext?.runAsUser ?? spec.securityContext?.runAsUser);
    gid ??= c.securityContext?.runAsGroup ?? spec.securityContext?.runAsGroup;
  }
  if (uids.has(undefined) || uids.size !== 1)
    return deny(
      'set runAsUser (on the pod or on every injected container, one user for all of them): the injected files are mode 0400 and the injector writes them as that user',
    );
  const uid = [...uids][0]!;

  const mutated: Container[] = [];
  for (const c of containers) {
    if (!targets.has(c.name)) {
      mutated.push(c);
      continue;
    }
    const mounts = c.volumeMounts ?? [];
    const clash = mounts.find(
      (m) =>
        within(m.mountPath, filesPath) ||
        within(filesPath, m.mountPath) ||
        (withEnv && (within(m.mountPath, '/sigil') || within('/sigil', m.mountPath))),
    );
    if (clash)
      return deny(`container ${c.name} already mounts ${clash.mountPath}, which overlaps ${filesPath}${withEnv ? ' or /sigil' : ''}`);
    const next: Container = { ...c, volumeMounts: [...mounts, { name: VOLUME_FILES, mountPath: filesPath, readOnly: true }] };
    if (withEnv) {
      if (!c.command?.length)
        return deny(
          `container ${c.name} has no command: environment injection wraps the command with sigil-exec, so the pod spec must give it (the image's ENTRYPOINT), or drop ${ANNOTATION_INJECT_ENV}`,
        );
      next.command = [`${BIN_DIR}/sigil-exec`, ...c.command];
      next.volumeMounts!.push(
        { name: VOLUME_ENV, mountPath: ENV_DIR, readOnly: true },
        { name: VOLUME_BIN, mountPath: BIN_DIR, readOnly: true },
      );
      next.env = [
        ...(c.env ?? []).filter((e) => e.name !== 'SIGIL_EXEC_ENV_FILE'),
        { name: 'SIGIL_EXEC_ENV_FILE', value: `${ENV_DIR}/env` },
      ];
    }
    mutated.push(next);
  }

  const injector = (name: string, command: 'init' | 'sidecar'): Container => ({
    name,
    image: settings.image,
    command: [...INJECTOR_ENTRY, command],
    env: [
      { name: 'SIGIL_INJECT_URL', value: settings.agentUrl },
      { name: 'SIGIL_INJECT_APP', value: app },
      { name: 'SIGIL_INJECT_CA', value: settings.caPem },
      { name: 'SIGIL_INJECT_TOKEN_FILE', value: `${TOKEN_DIR}/token` },
      { name: 'SIGIL_INJECT_FILES_DIR', value: filesPath },
      // The sidecar keeps the env file current too (a restarted container reads the new one) and
      // removes it with the files.
      ...(withEnv ? [{ name: 'SIGIL_INJECT_ENV_FILE', value: `${ENV_DIR}/env` }] : []),
      ...(withEnv && command === 'init' ? [{ name: 'SIGIL_INJECT_EXEC_DIR', value: BIN_DIR }] : []),
      ...(signal !== undefined && command === 'sidecar' ? [{ name: 'SIGIL_INJECT_SIGNAL', value: `SIG${signal}` }] : []),
    ],
    volumeMounts: [
      { name: VOLUME_TOKEN, mountPath: TOKEN_DIR, readOnly: true },
      { name: VOLUME_FILES, mountPath: filesPath },
      ...(withEnv ? [{ name: VOLUME_ENV, mountPath: ENV_DIR }] : []),
      ...(withEnv && command === 'init' ? [{ name: VOLUME_BIN, mountPath: BIN_DIR }] : []),
    ],
    securityContext: {
      runAsUser: uid,
      ...(gid !== undefined ? { runAsGroup: gid } : {}),
      ...(uid !== 0 ? { runAsNonRoot: true } : {}),
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    },
    ...(settings.resources ? { resources: settings.resources } : {}),
    ...(command === 'sidecar' ? { restartPolicy: 'Always' } : {}),
  });

  const memory = (sizeLimit: string) => ({ emptyDir: { medium: 'Memory', sizeLimit } });
  const volumes = [
    ...(spec.volumes ?? []),
    { name: VOLUME_FILES, ...memory('16Mi') },
    ...(withEnv
      ? [
          { name: VOLUME_ENV, ...memory('4Mi') },
          { name: VOLUME_BIN, ...memory('16Mi') },
        ]
      : []),
    {
      name: VOLUME_TOKEN,
      projected: {
        sources: [{ serviceAccountToken: { audience: settings.audience, expirationSeconds: TOKEN_EXPIRATION_SECONDS, path: 'token' } }],
      },
    },
  ];
  const initContainers = [
    injector(INIT_CONTAINER, 'init'),
    ...(mode === 'sidecar' ? [injector(SIDECAR_CONTAINER, 'sidecar')] : []),
    ...(spec.initContainers ?? []),
  ];
  return {
    kind: 'patch',
    app,
    ops: [
      { op: 'add', path: '/metadata/annotations', value: { ...annotations, [ANNOTATION_INJECTED]: app } },
      { op: 'add', path: '/spec/volumes', value: volumes },
      { op: 'add', path: '/spec/initContainers', value: initContainers },
      { op: 'add', path: '/spec/containers', value: mutated },
      // Signalling the app needs its processes in view: one PID namespace for the pod.
      ...(signal !== undefined ? [{ op: 'add' as const, path: '/spec/shareProcessNamespace', value: true }] : []),
    ],
  };
}

const deny = (message: string): Mutation => ({ kind: 'deny', message: `sigil injection: ${message}` });
const within = (path: string, dir: string) => path === dir || path.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
