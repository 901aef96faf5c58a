// Jest runs the TypeScript sources as native ES modules (node --experimental-vm-modules),
// transformed by SWC with the same options as the build (.swcrc). Path aliases come from
// tsconfig.json — one source of truth. See docs/decisions/001-esm-node24.md.
import { readFileSync } from 'node:fs';

const tsconfig = JSON.parse(readFileSync(new URL('./tsconfig.json', import.meta.url), 'utf8'));
const swcrc = JSON.parse(readFileSync(new URL('./.swcrc', import.meta.url), 'utf8'));
delete swcrc.$schema;
delete swcrc.jsc.paths;
delete swcrc.jsc.baseUrl;

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\/@]/g, (c) => (c === '*' ? c : `\\${c}`));
const aliases = Object.fromEntries(
  Object.entries(tsconfig.compilerOptions.paths).map(([alias, [target]]) => [
    `^${escape(alias).replace('*', '(.*)')}$`,
    `<rootDir>/${target.replace(/^\.\//, '').replace('*', '$1')}`,
  ]),
);

/** @type {import('jest').Config} */
export default {
  rootDir: '.',
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  transform: { '^.+\\.ts$': ['@swc/jest', { ...swcrc, swcrc: false }] },
  moduleNameMapper: { ...aliases, '^(\\.{1,2}/.*)\\.js$': '$1' },
  testMatch: ['<rootDir>/{apps,libs}/**/*.spec.ts', '<rootDir>/tests/**/*.{int,e2e}-spec.ts'],
  modulePathIgnorePatterns: ['<rootDir>/dist/', '<rootDir>/.data/'],
  globalSetup: '<rootDir>/tests/harness/global-setup.mjs',
  globalTeardown: '<rootDir>/tests/harness/global-teardown.mjs',
  testTimeout: 60_000,
  maxWorkers: 2,
  verbose: true,
};
