// Compiles apps/, libs/ and the test harness to dist/ with SWC (decorators + metadata,
// tsconfig path aliases rewritten to relative imports), then links the edge agent into one file.
// Type-checking is `make check`'s job.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { build as viteBuild } from 'vite';
import { compile } from './swc.mjs';

rmSync(new URL('../dist', import.meta.url), { recursive: true, force: true });
// Container builds copy only apps/ and libs/.
// apps/console is browser code: Vite builds it (below), not SWC.
const apps = readdirSync(new URL('../apps', import.meta.url))
  .filter((app) => app !== 'console')
  .map((app) => `apps/${app}`);
compile(
  [...apps, 'libs', 'tests/harness', 'bench'].filter((dir) => existsSync(new URL(`../${dir}`, import.meta.url))),
  'dist',
);

// The web console: static files in dist/console (hashed names), served by the control plane at
// /console/ (apps/control-plane/src/http/console-assets.ts).
await viteBuild({ configFile: fileURLToPath(new URL('../apps/console/vite.config.ts', import.meta.url)) });

// The edge agent ships as one CommonJS file (AGENT_ENTRY in apps/agent/src/runtime-flags.ts):
// one script instead of ~230 ES and CommonJS modules holds less source and loader state, about
// 1.6 MiB of its idle RSS (docs/decisions/007), and its image needs no node_modules.
// Whitespace and syntax only: names stay readable in stack traces and error names.
const options = {
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'cjs',
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'warning',
};
// @peculiar/x509 (the injection port's certificate) is its own file beside the agent's, required
// only when --inject is on: in the agent's bundle it would add 0.6 MB of source to every agent.
const x509Beside = {
  name: 'x509-beside',
  setup(b) {
    b.onResolve({ filter: /^@peculiar\/x509$/ }, () => ({ path: './sigil-agent-x509.cjs', external: true }));
  },
};
const bundle = (entry, outfile, plugins = []) =>
  build({
    ...options,
    entryPoints: [fileURLToPath(new URL(`../dist/apps/agent/src/${entry}`, import.meta.url))],
    outfile: fileURLToPath(new URL(`../dist/apps/agent/${outfile}`, import.meta.url)),
    plugins,
  });
await bundle('main.js', 'sigil-agent.cjs', [x509Beside]);
await build({
  ...options,
  stdin: {
    contents: "require('reflect-metadata'); module.exports = require('@peculiar/x509');",
    resolveDir: fileURLToPath(new URL('..', import.meta.url)),
  },
  outfile: fileURLToPath(new URL('../dist/apps/agent/sigil-agent-x509.cjs', import.meta.url)),
});
// The init container and sidecar of injected pods run the agent image with this second bundle.
// Node built-ins only (apps/agent/src/inject/injector-main.ts).
await bundle('inject/injector-main.js', 'sigil-inject.cjs');

// sigil-exec, the static Go exec wrapper of injected pods (apps/agent/exec-wrapper), cached per
// source and Go version by the script. The image's compile stage builds it in a Go stage instead
// (SIGIL_BUILD_EXEC_WRAPPER=0); without Go, everything else still builds, `make images` refuses.
if (process.env.SIGIL_BUILD_EXEC_WRAPPER !== '0' && existsSync(new URL('../apps/agent/exec-wrapper/go.mod', import.meta.url))) {
  try {
    execFileSync('bash', [fileURLToPath(new URL('./sigil-exec.sh', import.meta.url))], { stdio: 'inherit' });
  } catch (err) {
    if (err.status !== 3) throw err;
    process.stderr.write('[build] sigil-exec not built (no Go): the agent image needs it\n');
  }
}
