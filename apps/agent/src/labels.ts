/** How the agent marks what it manages, and what it writes on each Secret (never a value). */
export const MANAGED_BY = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_SIGIL = 'sigil';
export const LABEL_APP = 'sigil.dev/app';
export const ANNOTATION_SOURCE = 'sigil.dev/source'; // <project-id>/<app>/<secret>
export const ANNOTATION_SECRET_ID = 'sigil.dev/secret-id';
/** The Sigil cluster (its id) whose agent wrote the Secret: only that agent may hand it to a new owner. */
export const ANNOTATION_CLUSTER = 'sigil.dev/cluster';
export const ANNOTATION_VERSION = 'sigil.dev/version';
export const ANNOTATION_GENERATION = 'sigil.dev/generation';
/** SHA-256 of the delivered envelope (ciphertext): changes with every new value, reveals nothing about it. */
export const ANNOTATION_CHECKSUM = 'sigil.dev/checksum';
/** Opt-in on a Deployment/StatefulSet/DaemonSet: restart it when a Secret it uses changes. */
export const ANNOTATION_RESTART = 'sigil.dev/restart-on-change';
export const ANNOTATION_RESTARTED_AT = 'sigil.dev/restarted-at';

/** Injection (delivery mode inject): the pod-template annotations a workload opts in with (docs/injection.md). */
export const ANNOTATION_INJECT = 'sigil.dev/inject'; // <app>
export const ANNOTATION_INJECT_MODE = 'sigil.dev/inject-mode'; // init (default) | sidecar
export const ANNOTATION_INJECT_PATH = 'sigil.dev/inject-path'; // directory of the files (default /sigil/secrets)
export const ANNOTATION_INJECT_ENV = 'sigil.dev/inject-env'; // "true": also environment variables, via sigil-exec
export const ANNOTATION_INJECT_CONTAINERS = 'sigil.dev/inject-containers'; // a,b (default: every container)
export const ANNOTATION_INJECT_SIGNAL = 'sigil.dev/inject-signal'; // sidecar mode: signal the app after a rotation (HUP, USR1, ...)
/** Set by the webhook on a mutated pod (the app it was injected for); makes the mutation idempotent. */
export const ANNOTATION_INJECTED = 'sigil.dev/injected';
