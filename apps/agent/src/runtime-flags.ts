/**
 * How the agent's Node process is started (Dockerfile, Helm chart, tests): a 1 MiB young
 * generation and no JIT. The agent is idle almost always and its work is I/O and native crypto,
 * so neither costs it anything measurable, and together they save ~12 MiB of resident memory
 * (docs/decisions/007).
 */
export const AGENT_NODE_FLAGS = ['--max-semi-space-size=1', '--lite-mode', '--single-threaded', '--v8-pool-size=0'];
