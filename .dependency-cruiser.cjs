// Sigil's boundary rules, checked by `make check` (`make boundaries`): who may import what.
// docs/architecture.md explains each rule; docs/decisions/013 why dependency-cruiser.
// A violation fails the build. There is no baseline of known violations: the tree is clean.

const CP = '^apps/control-plane/src';

/** Feature folders of the control plane: each owns its tables, its error codes and its internals. */
const FEATURES =
  '(agent-api|api-tokens|apps|audit|auth|clusters|connections|delivery|enrollment|injection|keys|leases|projects|publications|secrets)';

/**
 * A feature's public surface, the files other features (and tests, benches) may import: its
 * module, services, DTOs and error codes (by role suffix), and these few files without one, each
 * exported by its module or a type other features need.
 */
const PUBLIC_FILES = [
  'auth/policy\\.ts', //                 Actor and permissions: every controller and service
  'auth/auth\\.decorators\\.ts', //      @Requires, @Audited, @CurrentActor
  'auth/bootstrap-admin-token\\.ts', //  hashToken/generateToken (enrollment tokens are hashed the same way)
  'auth/api-token\\.repository\\.ts', // AuthModule exports it: api-tokens/ manages the tokens auth owns
  'audit/failed-attempts\\.ts', //       AuditModule exports it: enrollment aggregates failed attempts
  'clusters/kubernetes-identity\\.ts', // the identity a cluster enrolls with (type and checks)
  'clusters/cluster-enrollment\\.repository\\.ts', // ClustersModule exports it: enrollment locks and enrolls the rows clusters/ owns
  'delivery/delivery-queue\\.ts', //     DeliveryModule exports it
  'delivery/delivery-builder\\.ts', //   DeliveryModule exports it
  'agent-api/agent-grpc\\.server\\.ts', // AgentApiModule exports it
  'agent-api/sync-streams\\.ts', //      AgentApiModule exports it
  'connections/engines/credential-engine\\.ts', // the engine interface dynamic secrets drive
  'connections/engines/statement-template\\.ts', // checks a dynamic secret's statements when it is written
];
const PUBLIC = `${CP}/(${FEATURES}/[^/]+\\.(module|service|dto|errors)\\.ts|${PUBLIC_FILES.join('|')})$`;

/** Internals the integration tests drive directly, beyond the public surface (keep this short). */
const TEST_ENTRIES = [
  `${CP}/leases/(lease-issuer|lease-sweep)\\.ts$`, // dynamic-secrets: crashes injected between the steps, the reaper run
  `${CP}/agent-api/agent-authenticator\\.ts$`, // agent-client-certificates: which certificates are refused
  `${CP}/enrollment/https-get\\.ts$`, //          agent-kubernetes-identity: the issuer's keys over the test kube-apiserver's TLS
  `${CP}/audit/audit-chain\\.ts$`, //             audit-chain: records in the legacy and the HMAC format
  `${CP}/audit/audit\\.repository\\.ts$`, //         audit-chain: the stored record type it tampers with
  `${CP}/agent-api/snapshot\\.repository\\.ts$`, //  snapshot-repository: its statements on a real PostgreSQL
  `${CP}/connections/engines/(postgresql\\.engine|dial-policy)\\.ts$`, // postgresql-engine: roles on a real target database, TLS names through the dial policy
  `${CP}/delivery/snapshot-build\\.repository\\.ts$`, // migration-derived-rows: wrapped keys saved without foreign keys
];

module.exports = {
  forbidden: [
    {
      name: 'typeorm-outside-data-layer',
      comment:
        'Only repositories, entities and database/ (with its migrations) touch TypeORM; services pass a Tx (database/transaction.ts). ' +
        'Tests may, to inspect the database.',
      severity: 'error',
      from: { path: '^(apps|libs)/', pathNot: ['\\.repository\\.ts$', '\\.entity\\.ts$', `${CP}/database/`] },
      to: { path: '^node_modules/typeorm/' },
    },
    {
      name: 'pkcs11js-outside-hsm',
      comment: 'Only the HSM module touches PKCS#11 (apps/control-plane/src/hsm/; the top-level hsm/ holds docs and a shell helper).',
      severity: 'error',
      from: { pathNot: `${CP}/hsm/` },
      to: { path: '^node_modules/pkcs11js/' },
    },
    {
      name: 'kube-adapter-entry',
      comment:
        "The agent's Kubernetes adapter is reached through its entry only: kube/kube-client.ts (the client) and kube/types.ts (the object shapes it speaks).",
      severity: 'error',
      from: { pathNot: '^apps/agent/src/kube/' },
      to: { path: '^apps/agent/src/kube/', pathNot: '^apps/agent/src/kube/(kube-client|types)\\.ts$' },
    },
    {
      name: 'kubernetes-client-node-in-apps',
      comment:
        'The agent talks to Kubernetes through its own small client (docs/decisions/007); @kubernetes/client-node is for tests only.',
      severity: 'error',
      from: { path: '^(apps|libs)/' },
      to: { path: '^node_modules/@kubernetes/client-node/' },
    },
    {
      name: 'feature-internals',
      comment:
        "A feature imports another feature's public surface only (its module, services, DTOs, errors, listed files; entities as types).",
      severity: 'error',
      from: { path: `${CP}/${FEATURES}/` },
      to: { path: `${CP}/${FEATURES}/`, pathNot: [`${CP}/$1/`, PUBLIC, '\\.entity\\.ts$'] },
    },
    {
      name: 'feature-entities-as-types',
      comment: "Another feature's entity is a type to read, never a table to map or write: import it with `import type`.",
      severity: 'error',
      from: { path: `${CP}/${FEATURES}/` },
      to: { path: `${CP}/${FEATURES}/[^/]+\\.entity\\.ts$`, pathNot: `${CP}/$1/`, dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'infrastructure-below-features',
      comment:
        'Infrastructure (common, config, database, embedded, events, health, hsm, http, logging, metrics, redis) depends on no feature. ' +
        "Its unit specs may: the problem filter's spec runs every feature's codes through it.",
      severity: 'error',
      from: { path: `${CP}/(common|config|database|embedded|events|health|hsm|http|logging|metrics|redis)/`, pathNot: '\\.spec\\.ts$' },
      to: { path: `${CP}/${FEATURES}/` },
    },
    {
      name: 'tests-through-entries',
      comment:
        'tests/ and bench/ reach control-plane features through their public surface (or the listed test entries); ' +
        'infrastructure and the composition root are open to them. Unit tests beside the code are not bound by this.',
      severity: 'error',
      from: { path: '^(tests|bench)/' },
      to: { path: `${CP}/${FEATURES}/`, pathNot: [PUBLIC, ...TEST_ENTRIES, '\\.entity\\.ts$'] },
    },
    {
      name: 'tests-agent-entries',
      comment: "tests/ and bench/ reach the agent through its top-level modules (apps/agent/src/*.ts) and the kube adapter's entry.",
      severity: 'error',
      from: { path: '^(tests|bench)/' },
      to: { path: '^apps/agent/src/.+/', pathNot: '^apps/agent/src/kube/(kube-client|types)\\.ts$' },
    },
    {
      name: 'apps-apart',
      comment:
        'The control plane, the agent, the CLI and the console share code only through libs/ (the CLI and the console speak the REST API, the agent gRPC).',
      severity: 'error',
      from: { path: '^apps/([^/]+)/' },
      to: { path: '^apps/', pathNot: '^apps/$1/' },
    },
    {
      name: 'libs-below-apps',
      comment: 'libs/ is what apps share: it imports no app.',
      severity: 'error',
      from: { path: '^libs/' },
      to: { path: '^apps/' },
    },
    {
      name: 'no-circular',
      comment: 'No file imports itself, however indirectly.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'no-folder-cycles',
      comment: 'No cycle between folders (features and infrastructure alike): the dependency graph is a layering, readable from the tree.',
      severity: 'error',
      scope: 'folder',
      from: { path: `${CP}/` },
      to: { circular: true },
    },
  ],
  options: {
    tsConfig: { fileName: 'tsconfig.json' },
    // Type-only imports count: a type from another feature is a dependency too.
    tsPreCompilationDeps: true,
    doNotFollow: { path: 'node_modules' },
    exclude: { path: ['^libs/agent-protocol/src/gen/', '^dist/'] },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.tsx', '.js', '.mjs', '.cjs', '.d.ts'],
    },
  },
};
