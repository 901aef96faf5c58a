import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, whether this runs from tests/harness (Jest) or dist/tests/harness (benchmarks). */
export function repoRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const root = path.resolve(here, '../..');
  return path.basename(root) === 'dist' ? path.dirname(root) : root;
}
