// Compiles apps/, libs/ and the test harness to dist/ with SWC (decorators + metadata,
// tsconfig path aliases rewritten to relative imports), then links the edge agent into one file.
// Type-checking is `make check`'s job.
import { existsSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { compile } from './swc.mjs';

rmSync(new URL('../dist', import.meta.url), { recursive: true, force: true });
// Container builds copy only apps/ and libs/.
compile(
  ['apps', 'libs', 'tests/harness', 'bench'].filter((dir) => existsSync(new URL(`../${dir}`, import.meta.url))),
  'dist',
);

// The edge agent ships as one CommonJS file (AGENT_ENTRY in apps/agent/src/runtime-flags.ts):
// one script instead of ~230 ES and CommonJS modules holds less source and loader state, about
// 1.6 MiB of its idle RSS (docs/decisions/007), and its image needs no node_modules.
// Whitespace and syntax only: names stay readable in stack traces and error names.
await build({
  entryPoints: [fileURLToPath(new URL('../dist/apps/agent/src/main.js', import.meta.url))],
  outfile: fileURLToPath(new URL('../dist/apps/agent/sigil-agent.cjs', import.meta.url)),
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'cjs',
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'warning',
});

// The injector that injected pods run from the agent's image (apps/agent/src/inject/injector-main.ts):
// Node built-ins only, one file beside the agent's.
await build({
  entryPoints: [fileURLToPath(new URL('../dist/apps/agent/src/inject/injector-main.js', import.meta.url))],
  outfile: fileURLToPath(new URL('../dist/apps/agent/sigil-inject.cjs', import.meta.url)),
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'cjs',
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'warning',
});
