// Compiles apps/, libs/ and the test harness to dist/ with SWC (decorators + metadata,
// tsconfig path aliases rewritten to relative imports). Type-checking is `make check`'s job.
import { execFileSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
rmSync(new URL('../dist', import.meta.url), { recursive: true, force: true });
execFileSync(
  process.execPath,
  [
    'node_modules/@swc/cli/bin/swc.js',
    // Container builds copy only apps/ and libs/.
    ...['apps', 'libs', 'tests/harness', 'bench'].filter((dir) => existsSync(new URL(`../${dir}`, import.meta.url))),
    '-d',
    'dist',
    '--config-file',
    '.swcrc',
    '--ignore',
    '**/*.spec.ts,**/*.int-spec.ts,**/*.e2e-spec.ts',
    '--quiet',
  ],
  { cwd: root, stdio: 'inherit' },
);
