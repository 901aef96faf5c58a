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
