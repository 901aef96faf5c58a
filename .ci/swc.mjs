// SWC with the project's options (.swcrc: decorators + metadata, path aliases rewritten to
// relative imports), tests left out: what the build and the OpenAPI generator compile with.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Compiles `sources` (folders relative to the repository) into `outDir`. */
export function compile(sources, outDir) {
  execFileSync(
    process.execPath,
    [
      'node_modules/@swc/cli/bin/swc.js',
      ...sources,
      '-d',
      outDir,
      '--config-file',
      '.swcrc',
      '--ignore',
      '**/*.spec.ts,**/*.int-spec.ts,**/*.e2e-spec.ts',
      '--quiet',
    ],
    { cwd: root, stdio: 'inherit' },
  );
}
