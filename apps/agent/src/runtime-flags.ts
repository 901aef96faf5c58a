/**
 * How the agent's Node process is started (Dockerfile ENTRYPOINT, docs/agent.md, tests): a 1 MiB
 * young generation, no JIT, no V8 background threads, no Node startup snapshot, and root
 * certificates from OpenSSL's default store instead of Node's bundled list. The agent is idle
 * almost always and its work is I/O and native crypto, so none of this costs it anything
 * measurable. Idle RSS saved (docs/decisions/007): 16 MiB for the first four; 4 MiB for
 * --no-node-snapshot (Node compiles the internals it uses instead of loading a pre-built heap of
 * all of them; ~40 ms more at startup); 1 MiB for --use-openssl-ca (Node no longer parses its
 * 121 bundled roots, which the agent never uses: every connection names its CA, see
 * kubeconfigAccess).
 */
export const AGENT_NODE_FLAGS = [
  '--max-semi-space-size=1',
  '--lite-mode',
  '--single-threaded',
  '--v8-pool-size=0',
  '--no-node-snapshot',
  '--use-openssl-ca',
];

/** The script it runs, relative to the repository root and to the image's WORKDIR: the whole agent in one file (.ci/build.mjs). */
export const AGENT_ENTRY = 'dist/apps/agent/sigil-agent.cjs';
